//! Showing a [`Changeset`]: terminal text (optionally coloured), Markdown
//! for a pull-request comment, and JSON (schema in docs/diff.md).

use std::fmt::Write as _;

use super::changeset::*;
use super::values::show;

/// The one line that leads every format; `no changes` when nothing changed.
pub fn headline(c: &Changeset) -> String {
    if !c.changed {
        return "no changes".into();
    }
    let configs = c.configurations.iter().filter(|x| x.is_changed()).count();
    let mut parts = vec![plural(configs, "configuration", "configurations") + " changed"];
    if matches!(c.against, Against::Tree { .. } | Against::Rev { .. }) {
        parts.push(plural(c.files.len(), "file", "files") + " changed");
    }
    parts.join(", ")
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

// ------------------------------------------------------------------ text

struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    fn warn(&self, s: &str) -> String {
        self.wrap("1;31", s)
    }
    fn change(&self, c: Change, s: &str) -> String {
        match c {
            Change::Added => self.wrap("32", s),
            Change::Removed => self.wrap("31", s),
            Change::Changed => self.wrap("33", s),
        }
    }
    fn diff_line(&self, line: &str) -> String {
        if line.starts_with("+++") || line.starts_with("---") {
            self.bold(line)
        } else if line.starts_with('+') {
            self.wrap("32", line)
        } else if line.starts_with('-') {
            self.wrap("31", line)
        } else if line.starts_with("@@") {
            self.wrap("36", line)
        } else {
            line.to_string()
        }
    }
}

/// Terminal text. With `color`, ANSI colours (the caller decides: a TTY and
/// no `NO_COLOR`).
pub fn text(c: &Changeset, color: bool) -> String {
    let p = Paint { on: color };
    if !c.changed {
        return format!("{}\n", headline(c));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        p.bold(&format!(
            "masgen diff: {} against {}: {}",
            c.spec,
            c.against.describe(),
            headline(c)
        ))
    );
    for cfg in &c.configurations {
        out.push('\n');
        config_text(&mut out, cfg, &p);
    }
    if !c.notes.is_empty() {
        let _ = writeln!(out, "\n{}", p.bold("notes:"));
        for n in &c.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
    if !c.files.is_empty() {
        let _ = writeln!(out, "\n{}", p.bold("files:"));
        for f in &c.files {
            let mut line = format!("{} {}", f.change.sigil(), f.path);
            if let Some(w) = &f.compared_with {
                if f.diff.is_empty() {
                    let _ = write!(line, " (same content as {w})");
                } else {
                    let _ = write!(line, " (compared with {w})");
                }
            }
            let _ = writeln!(out, "  {}", p.change(f.change, &line));
        }
        for f in c.files.iter().filter(|f| !f.diff.is_empty()) {
            out.push('\n');
            for line in f.diff.lines() {
                let _ = writeln!(out, "{}", p.diff_line(line));
            }
        }
    }
    out
}

fn config_title(cfg: &ConfigurationChange) -> String {
    let status = match cfg.status {
        Status::Added => "new configuration".to_string(),
        Status::Removed => "no longer built".to_string(),
        Status::Unchanged => "unchanged".to_string(),
        Status::Changed => "changed".to_string(),
    };
    let against = match (&cfg.baseline, cfg.status) {
        (Some(b), Status::Changed | Status::Unchanged) if *b != cfg.configuration => {
            format!(", against {}", quote_config(b))
        }
        _ => String::new(),
    };
    format!(
        "host {}, configuration `{}` ({}): {status}{against}",
        cfg.host, cfg.configuration, cfg.phase
    )
}

/// `matrix-prepare` in backticks, a description (the system at …) as is.
fn quote_config(b: &str) -> String {
    if b.contains(' ') {
        b.to_string()
    } else {
        format!("`{b}`")
    }
}

fn config_text(out: &mut String, cfg: &ConfigurationChange, p: &Paint) {
    let _ = writeln!(out, "{}", p.bold(&format!("== {} ==", config_title(cfg))));
    if !cfg.is_changed() {
        return;
    }
    if let Some(ph) = &cfg.phase_change {
        let _ = writeln!(
            out,
            "{}",
            p.warn(&format!("!! phase change: {} → {}", ph.from, ph.to))
        );
    }
    for w in &cfg.warnings {
        let _ = writeln!(out, "{}", p.warn(&format!("!! {}", w.message)));
    }
    if !cfg.units.is_empty() {
        let _ = writeln!(out, "units (what switch-to-configuration does):");
        let width = cfg.units.iter().map(|u| u.unit.len()).max().unwrap_or(0);
        for u in &cfg.units {
            let mut line = format!("  {:<7} {:<width$}  {}", u.action.word(), u.unit, u.summary);
            if !u.reasons.is_empty() {
                let _ = write!(line, ": {}", u.reasons.join("; "));
            }
            let _ = writeln!(out, "{}", p.change(u.change, &line));
        }
    }
    settings_text(out, "Synapse settings", &cfg.synapse_settings, p);
    settings_text(out, "MAS settings", &cfg.mas_settings, p);
    if !cfg.virtual_hosts.is_empty() || !cfg.routes.is_empty() {
        let _ = writeln!(out, "nginx:");
        for v in &cfg.virtual_hosts {
            let mut line = format!("  {} virtual host {}", v.change.sigil(), v.server_name);
            if !v.reasons.is_empty() {
                let _ = write!(line, " ({})", v.reasons.join(", "));
            }
            let _ = writeln!(out, "{}", p.change(v.change, &line));
        }
        let mut current = "";
        for r in &cfg.routes {
            if r.server_name != current {
                current = &r.server_name;
                let _ = writeln!(out, "  {current}:");
            }
            let line = format!(
                "    {} location {}: {}",
                r.change.sigil(),
                r.matcher,
                route_text(r)
            );
            let _ = writeln!(out, "{}", p.change(r.change, &line));
        }
    }
    settings_text(out, "other options", &cfg.other_options, p);
    if !cfg.unmanaged_settings.is_empty() {
        let _ = writeln!(
            out,
            "on the system, not set by masgen (they stay if nixpkgs defaults or the host's own configuration set them): {}",
            cfg.unmanaged_settings.join(", ")
        );
    }
    if !cfg.foreign_units.is_empty() {
        let _ = writeln!(
            out,
            "other units on the system (not managed by masgen; untouched by this comparison): {}",
            cfg.foreign_units.join(", ")
        );
    }
}

fn route_text(r: &RouteChange) -> String {
    match (&r.old, &r.new) {
        (Some(o), Some(n)) => format!("{} → {}", o.describe(), n.describe()),
        (None, Some(n)) => n.describe(),
        (Some(o), None) => o.describe(),
        (None, None) => String::new(),
    }
}

fn setting_text(s: &SettingChange) -> String {
    match s.change {
        Change::Changed => format!(
            "{}: {} → {}",
            s.path,
            show(s.old.as_ref()),
            show(s.new.as_ref())
        ),
        Change::Added => format!("{}: {}", s.path, show(s.new.as_ref())),
        Change::Removed => format!("{}: {}", s.path, show(s.old.as_ref())),
    }
}

fn settings_text(out: &mut String, title: &str, list: &[SettingChange], p: &Paint) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(out, "{title}:");
    for s in list {
        let line = format!("  {} {}", s.change.sigil(), setting_text(s));
        let _ = writeln!(out, "{}", p.change(s.change, &line));
    }
}

// -------------------------------------------------------------- markdown

/// Markdown for a pull-request comment: the summary first, then each file's
/// diff in a collapsed `<details>` block.
pub fn markdown(c: &Changeset) -> String {
    let mut out = String::new();
    if !c.changed {
        let _ = writeln!(out, "**masgen diff**: no changes");
        return out;
    }
    let _ = writeln!(out, "### masgen diff: {}\n", headline(c));
    let _ = writeln!(
        out,
        "{} compared with {}.\n",
        code(&c.spec),
        md_against(&c.against)
    );
    for cfg in &c.configurations {
        config_markdown(&mut out, cfg);
    }
    if !c.notes.is_empty() {
        let _ = writeln!(out, "#### Notes\n");
        for n in &c.notes {
            let _ = writeln!(out, "- {}", escape_md(n));
        }
        out.push('\n');
    }
    if !c.files.is_empty() {
        let _ = writeln!(out, "#### Files\n");
        for f in &c.files {
            let mut line = format!("- `{}` {}", f.change.sigil(), code(&f.path));
            if let Some(w) = &f.compared_with {
                let how = if f.diff.is_empty() {
                    "same content as"
                } else {
                    "compared with"
                };
                let _ = write!(line, " ({how} {})", code(w));
            }
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
        for f in c.files.iter().filter(|f| !f.diff.is_empty()) {
            let fence = fence_for(&f.diff);
            let _ = writeln!(
                out,
                "<details><summary><code>{}</code> ({})</summary>\n\n{fence}diff\n{}{}{fence}\n\n</details>\n",
                html_escape(&f.path),
                change_word(f.change),
                f.diff,
                if f.diff.ends_with('\n') { "" } else { "\n" },
            );
        }
    }
    out
}

fn md_against(a: &Against) -> String {
    match a {
        Against::Tree { path } => format!("the output tree in {}", code(path)),
        Against::Rev { rev } => format!("the spec at git revision {}", code(rev)),
        Against::System { root } => format!("the system at {}", code(root)),
    }
}

fn change_word(c: Change) -> &'static str {
    match c {
        Change::Added => "added",
        Change::Removed => "removed",
        Change::Changed => "changed",
    }
}

fn config_markdown(out: &mut String, cfg: &ConfigurationChange) {
    let status = match cfg.status {
        Status::Added => "new configuration",
        Status::Removed => "no longer built",
        Status::Unchanged => "unchanged",
        Status::Changed => "changed",
    };
    let against = match (&cfg.baseline, cfg.status) {
        (Some(b), Status::Changed | Status::Unchanged) if *b != cfg.configuration => {
            if b.contains(' ') {
                format!(", against {}", escape_md(b))
            } else {
                format!(", against {}", code(b))
            }
        }
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "#### {} (host {}, {}): {status}{against}\n",
        code(&cfg.configuration),
        code(&cfg.host),
        cfg.phase
    );
    if !cfg.is_changed() {
        return;
    }
    if cfg.phase_change.is_some() || !cfg.warnings.is_empty() {
        let _ = writeln!(out, "> [!WARNING]");
        if let Some(ph) = &cfg.phase_change {
            let _ = writeln!(
                out,
                "> **Phase change: {} → {}**",
                escape_md(&ph.from),
                escape_md(&ph.to)
            );
        }
        for w in &cfg.warnings {
            let _ = writeln!(out, "> - **{}**: {}", w.code, escape_md(&w.message));
        }
        out.push('\n');
    }
    if !cfg.units.is_empty() {
        let _ = writeln!(out, "| Unit | On switch | What happens | Why |");
        let _ = writeln!(out, "|---|---|---|---|");
        for u in &cfg.units {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                cell(&code(&u.unit)),
                u.action.word(),
                cell(&escape_md(&u.summary)),
                cell(&escape_md(&u.reasons.join("; ")))
            );
        }
        out.push('\n');
    }
    settings_markdown(out, "Synapse settings", &cfg.synapse_settings);
    settings_markdown(out, "MAS settings", &cfg.mas_settings);
    nginx_markdown(out, cfg);
    settings_markdown(out, "Other options", &cfg.other_options);
    if !cfg.unmanaged_settings.is_empty() {
        let list: Vec<String> = cfg.unmanaged_settings.iter().map(|s| code(s)).collect();
        let _ = writeln!(
            out,
            "On the system, not set by masgen (they stay if nixpkgs defaults or the host's own configuration set them): {}\n",
            list.join(", ")
        );
    }
    if !cfg.foreign_units.is_empty() {
        let list: Vec<String> = cfg.foreign_units.iter().map(|s| code(s)).collect();
        let _ = writeln!(
            out,
            "Other units on the system (not managed by masgen; untouched by this comparison): {}\n",
            list.join(", ")
        );
    }
}

/// nginx's virtual hosts and locations that change.
fn nginx_markdown(out: &mut String, cfg: &ConfigurationChange) {
    if cfg.virtual_hosts.is_empty() && cfg.routes.is_empty() {
        return;
    }
    let _ = writeln!(out, "**nginx**\n");
    for v in &cfg.virtual_hosts {
        let mut line = format!(
            "- `{}` virtual host {}",
            v.change.sigil(),
            code(&v.server_name)
        );
        if !v.reasons.is_empty() {
            let _ = write!(line, " ({})", escape_md(&v.reasons.join(", ")));
        }
        let _ = writeln!(out, "{line}");
    }
    for r in &cfg.routes {
        let _ = writeln!(
            out,
            "- `{}` {} location {}: {}",
            r.change.sigil(),
            code(&r.server_name),
            code(&r.matcher),
            match (&r.old, &r.new) {
                (Some(o), Some(n)) => format!("{} → {}", code(&o.describe()), code(&n.describe())),
                (None, Some(n)) => code(&n.describe()),
                (Some(o), None) => code(&o.describe()),
                (None, None) => String::new(),
            }
        );
    }
    out.push('\n');
}

fn settings_markdown(out: &mut String, title: &str, list: &[SettingChange]) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(out, "**{title}**\n");
    for s in list {
        let body = match s.change {
            Change::Changed => format!(
                "{}: {} → {}",
                code(&s.path),
                code(&show(s.old.as_ref())),
                code(&show(s.new.as_ref()))
            ),
            Change::Added => format!("{}: {}", code(&s.path), code(&show(s.new.as_ref()))),
            Change::Removed => format!("{}: {}", code(&s.path), code(&show(s.old.as_ref()))),
        };
        let _ = writeln!(out, "- `{}` {body}", s.change.sigil());
    }
    out.push('\n');
}

/// An inline code span that survives backticks in `s`.
fn code(s: &str) -> String {
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let ticks = "`".repeat(longest + 1);
    if s.starts_with('`') || s.ends_with('`') || longest > 0 {
        format!("{ticks} {s} {ticks}")
    } else {
        format!("{ticks}{s}{ticks}")
    }
}

/// A table cell: pipes escaped (GitHub honours `\|` inside code spans too).
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Characters that would start Markdown or HTML markup in running text;
/// `code spans` are left alone (they are literal).
fn escape_md(s: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for c in s.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code && matches!(c, '\\' | '*' | '_' | '<' | '>' | '[' | ']' | '#' | '|') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A code fence longer than any run of backticks in the text.
fn fence_for(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

// ------------------------------------------------------------------ json

/// The changeset as pretty JSON (`schema_version` 1), with a final newline.
pub fn json(c: &Changeset) -> String {
    let mut s = serde_json::to_string_pretty(c).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spans_survive_backticks() {
        assert_eq!(code("a"), "`a`");
        assert_eq!(code("a`b"), "`` a`b ``");
        assert_eq!(fence_for("```x"), "````");
        assert_eq!(fence_for("plain"), "```");
    }
}
