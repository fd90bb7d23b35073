//! `masgen explain CODE`: the long explanation of a diagnostic or plan
//! refusal code. One source for the CLI and the docs: docs/codes.md, one
//! `` ## `code` `` section per code, embedded at build time.

const CODES_MD: &str = include_str!("../docs/codes.md");

/// Every explained code with its text (the section's body), in file order.
pub fn all() -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    let mut rest = CODES_MD;
    // Each section starts at a line "## `code`".
    while let Some(start) = rest.find("\n## `") {
        let heading = &rest[start + 5..];
        let Some(close) = heading.find('`') else {
            break;
        };
        let code = &heading[..close];
        let body_start = heading.find('\n').map_or(heading.len(), |i| i + 1);
        let body = &heading[body_start..];
        let end = body.find("\n## ").map_or(body.len(), |i| i + 1);
        out.push((code, body[..end].trim()));
        rest = &body[end.saturating_sub(1)..];
    }
    out
}

/// The explanation of `code`, if it has one.
pub fn explain(code: &str) -> Option<&'static str> {
    all()
        .into_iter()
        .find(|(c, _)| *c == code)
        .map(|(_, text)| text)
}

/// Codes that share `code`'s first segment (`secret.` for `secret.literl`),
/// to suggest when a code is unknown.
pub fn similar(code: &str) -> Vec<&'static str> {
    let family = code.split('.').next().unwrap_or(code);
    all()
        .into_iter()
        .map(|(c, _)| c)
        .filter(|c| c.split('.').next() == Some(family))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_split_at_their_headings() {
        let all = all();
        assert!(all.len() > 10);
        let (code, text) = all[0];
        assert!(!code.is_empty() && !code.contains(' '), "{code}");
        assert!(!text.contains("\n## "), "{text}");
        assert!(explain("secret.literal").is_some());
        assert!(explain("no.such_code").is_none());
        assert!(similar("secret.literl").contains(&"secret.literal"));
    }
}
