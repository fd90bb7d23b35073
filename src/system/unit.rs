//! systemd unit files as a system root holds them: sections, keys with
//! line continuations joined, and the words of a command line as systemd
//! splits them.

use std::collections::BTreeMap;

/// A systemd unit file: section → `(key, value)` in file order; keys with
/// `\` line continuations joined.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Unit {
    pub sections: BTreeMap<String, Vec<(String, String)>>,
}

impl Unit {
    pub(super) fn parse(text: &str) -> Unit {
        let mut unit = Unit::default();
        let mut section = String::new();
        let mut logical = String::new();
        let mut lines = text.lines().peekable();
        while let Some(raw) = lines.next() {
            let line = raw.trim();
            if logical.is_empty() && (line.starts_with('#') || line.starts_with(';')) {
                continue;
            }
            if let Some(cont) = line.strip_suffix('\\') {
                logical.push_str(cont);
                logical.push(' ');
                if lines.peek().is_some() {
                    continue;
                }
            } else {
                logical.push_str(line);
            }
            let l = std::mem::take(&mut logical);
            let l = l.trim();
            if l.is_empty() {
                continue;
            }
            if l.starts_with('[') && l.ends_with(']') {
                section = l[1..l.len() - 1].to_string();
                continue;
            }
            if let Some((k, v)) = l.split_once('=') {
                unit.sections
                    .entry(section.clone())
                    .or_default()
                    .push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        unit
    }

    /// Every value of `key` in `section`, in order (an empty value resets
    /// the list, as systemd does for list settings).
    pub(super) fn values(&self, section: &str, key: &str) -> Vec<&str> {
        let mut out = Vec::new();
        for (k, v) in self.sections.get(section).into_iter().flatten() {
            if k == key {
                if v.is_empty() {
                    out.clear();
                } else {
                    out.push(v.as_str());
                }
            }
        }
        out
    }

    /// The last value of `key` in `section`.
    pub fn value(&self, section: &str, key: &str) -> Option<&str> {
        self.values(section, key).last().copied()
    }

    /// The words of the (last) `ExecStart=`, without systemd's prefixes.
    pub fn exec_start(&self) -> Vec<String> {
        self.value("Service", "ExecStart")
            .map(exec_words)
            .unwrap_or_default()
    }

    /// `LoadCredential=name:path` entries.
    pub fn credentials(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for v in self.values("Service", "LoadCredential") {
            for word in exec_words(v) {
                if let Some((name, path)) = word.split_once(':') {
                    out.insert(name.to_string(), path.to_string());
                } else {
                    out.insert(word.clone(), String::new());
                }
            }
        }
        out
    }

    /// Space-separated unit lists such as `Conflicts=`, sorted.
    pub fn list(&self, section: &str, key: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .values(section, key)
            .iter()
            .flat_map(|v| v.split_whitespace().map(str::to_string))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Splits an `Exec*=` value into words: whitespace separates, `"…"` and
/// `'…'` quote (with C escapes inside double quotes), `%%` is `%` and `$$`
/// is `$`; the `@-:+!` prefixes of the first word are dropped.
pub(super) fn exec_words(value: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = value.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
            match c {
                '"' | '\'' => {
                    while let Some(d) = chars.next() {
                        if d == c {
                            break;
                        }
                        if d == '\\' && c == '"' {
                            match chars.next() {
                                Some('n') => word.push('\n'),
                                Some('t') => word.push('\t'),
                                Some(other) => word.push(other),
                                None => {}
                            }
                        } else {
                            word.push(d);
                        }
                    }
                }
                '\\' => word.extend(chars.next()),
                c => word.push(c),
            }
        }
        words.push(word.replace("%%", "%").replace("$$", "$"));
    }
    if let Some(first) = words.first_mut() {
        *first = first
            .trim_start_matches(['@', '-', ':', '+', '!'])
            .to_string();
    }
    words
}

/// Values of `flag X`, `flag=X` in a command line, in order.
pub(super) fn flag_values(words: &[String], flags: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        if flags.contains(&w.as_str()) {
            if let Some(v) = words.get(i + 1) {
                out.push(v.clone());
            }
            i += 2;
            continue;
        }
        for f in flags {
            if let Some(v) = w.strip_prefix(&format!("{f}=")) {
                out.push(v.to_string());
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_args_reads_both_forms() {
        let unit = "[Service]\nExecStart=/nix/store/x/bin/synapse --config-path /a.yaml --config-path=/b.yaml --keys-directory /k\n";
        let words = Unit::parse(unit).exec_start();
        assert_eq!(
            flag_values(&words, &["--config-path"]),
            ["/a.yaml", "/b.yaml"]
        );
        assert!(flag_values(&words, &["--config"]).is_empty());
    }

    #[test]
    fn parses_continuations_quotes_and_prefixes() {
        let unit = Unit::parse(
            "[Unit]\nDescription=A 100%% test\n# comment\n[Service]\nExecStart=@/nix/store/x-syn/bin/synapse_homeserver \\\n  --config-path /nix/store/y-homeserver.yaml \\\n  --config-path \"/run/a b.yaml\"\nLoadCredential=a:/run/secrets/a\nLoadCredential=b:/x\n",
        );
        assert_eq!(
            unit.exec_start(),
            [
                "/nix/store/x-syn/bin/synapse_homeserver",
                "--config-path",
                "/nix/store/y-homeserver.yaml",
                "--config-path",
                "/run/a b.yaml"
            ]
        );
        assert_eq!(
            flag_values(&unit.exec_start(), &["--config-path"]),
            ["/nix/store/y-homeserver.yaml", "/run/a b.yaml"]
        );
        assert_eq!(unit.credentials().len(), 2);
        assert_eq!(unit.value("Unit", "Description"), Some("A 100%% test"));
    }

    #[test]
    fn unescapes_json_quoted_words() {
        assert_eq!(
            exec_words(r#""/bin/x" "a\"b" "100%%" "$$HOME" '%d/c'"#),
            ["/bin/x", "a\"b", "100%", "$HOME", "%d/c"]
        );
    }
}
