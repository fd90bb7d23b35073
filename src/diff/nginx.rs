//! nginx configuration text as routes: `server_name` → location matcher →
//! where it sends requests. Enough of nginx's syntax for what NixOS's nginx
//! module (and masgen's reference render) writes: directives, blocks,
//! quoted strings and comments.

use std::collections::BTreeMap;

use super::changeset::RouteTarget;

/// Locations by matcher.
pub type Routes = BTreeMap<String, RouteTarget>;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// `name arg…;`
    Directive(Vec<String>),
    /// `name arg… { … }`
    Block(Vec<String>, Vec<Node>),
}

/// Words with their quotes kept (`'{"a":1}'` stays one word), `{`, `}`, `;`.
fn tokens(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            out.push(std::mem::take(word));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' if word.is_empty() => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '\'' | '"' => {
                word.push(c);
                let mut closed = false;
                while let Some(d) = chars.next() {
                    word.push(d);
                    if d == '\\' {
                        if let Some(e) = chars.next() {
                            word.push(e);
                        }
                    } else if d == c {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Err("an unterminated quoted string".into());
                }
            }
            '{' | '}' | ';' => {
                flush(&mut word, &mut out);
                out.push(c.to_string());
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    Ok(out)
}

fn parse_nodes(toks: &[String], pos: &mut usize, nested: bool) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    let mut words = Vec::new();
    while *pos < toks.len() {
        let t = &toks[*pos];
        *pos += 1;
        match t.as_str() {
            ";" => nodes.push(Node::Directive(std::mem::take(&mut words))),
            "{" => {
                let inner = parse_nodes(toks, pos, true)?;
                nodes.push(Node::Block(std::mem::take(&mut words), inner));
            }
            "}" => {
                if !nested {
                    return Err("an unbalanced `}`".into());
                }
                return Ok(nodes);
            }
            _ => words.push(t.clone()),
        }
    }
    if nested {
        return Err("a block without its `}`".into());
    }
    if !words.is_empty() {
        return Err(format!("`{}` without `;`", words.join(" ")));
    }
    Ok(nodes)
}

fn parse(text: &str) -> Result<Vec<Node>, String> {
    let toks = tokens(text)?;
    parse_nodes(&toks, &mut 0, false)
}

/// Directives that do not change where a request goes (nixpkgs'
/// recommended proxy headers, written out or included).
fn is_plumbing(words: &[String]) -> bool {
    matches!(
        words.first().map(String::as_str),
        Some("include" | "proxy_set_header")
    )
}

/// Routes of every `server` block of an nginx config, by `server_name`.
/// Blocks that only redirect to HTTPS (NixOS's `forceSSL`) and ACME
/// challenge locations are left out.
pub fn routes(text: &str) -> Result<BTreeMap<String, Routes>, String> {
    let nodes = parse(text)?;
    let mut servers = Vec::new();
    collect_servers(&nodes, &mut servers);
    let mut out: BTreeMap<String, Routes> = BTreeMap::new();
    for body in servers {
        let mut names = Vec::new();
        let mut routes = Routes::new();
        for n in body {
            match n {
                Node::Directive(w) if w.first().map(String::as_str) == Some("server_name") => {
                    names.extend(w[1..].iter().cloned())
                }
                Node::Block(head, inner)
                    if head.first().map(String::as_str) == Some("location") =>
                {
                    let matcher = head[1..].join(" ");
                    if matcher.contains("acme-challenge") {
                        continue;
                    }
                    routes.insert(matcher, target(inner));
                }
                _ => {}
            }
        }
        let https_redirect = routes.len() == 1
            && routes.get("/").is_some_and(|t| {
                t.return_value
                    .as_deref()
                    .is_some_and(|r| r.starts_with("301 https://"))
                    && t.proxy_pass.is_none()
            });
        if https_redirect {
            for name in &names {
                out.entry(name.clone()).or_default();
            }
            continue;
        }
        for name in names {
            out.entry(name).or_default().extend(routes.clone());
        }
    }
    Ok(out)
}

fn collect_servers<'a>(nodes: &'a [Node], out: &mut Vec<&'a [Node]>) {
    for n in nodes {
        if let Node::Block(head, inner) = n {
            if head.first().map(String::as_str) == Some("server") {
                out.push(inner);
            } else {
                collect_servers(inner, out);
            }
        }
    }
}

fn target(body: &[Node]) -> RouteTarget {
    let mut t = RouteTarget {
        proxy_pass: None,
        return_value: None,
        extra_config: None,
    };
    let mut extra = Vec::new();
    for n in body {
        match n {
            Node::Directive(w) if w.first().map(String::as_str) == Some("proxy_pass") => {
                t.proxy_pass = Some(w[1..].join(" "))
            }
            Node::Directive(w) if w.first().map(String::as_str) == Some("return") => {
                t.return_value = Some(w[1..].join(" "))
            }
            Node::Directive(w) if is_plumbing(w) || w.is_empty() => {}
            Node::Directive(w) => extra.push(format!("{};", w.join(" "))),
            Node::Block(head, _) => extra.push(format!("{} {{…}}", head.join(" "))),
        }
    }
    if !extra.is_empty() {
        t.extra_config = Some(extra.join("\n"));
    }
    t
}

/// A location's `extraConfig` the way [`routes`] shows directives, so the
/// two sides compare (whitespace and header plumbing aside).
pub fn normalize(t: &RouteTarget) -> RouteTarget {
    let extra = t.extra_config.as_deref().and_then(|e| {
        let nodes = parse(e).ok()?;
        let lines: Vec<String> = nodes
            .iter()
            .filter_map(|n| match n {
                Node::Directive(w) if is_plumbing(w) || w.is_empty() => None,
                Node::Directive(w) => Some(format!("{};", w.join(" "))),
                Node::Block(head, _) => Some(format!("{} {{…}}", head.join(" "))),
            })
            .collect();
        (!lines.is_empty()).then(|| lines.join("\n"))
    });
    RouteTarget {
        proxy_pass: t.proxy_pass.clone(),
        return_value: t.return_value.clone(),
        extra_config: extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_servers_locations_and_skips_the_https_redirect() {
        let conf = r#"
http {
  # comment { not a block
  server {
    listen 0.0.0.0:80;
    server_name m.example.org;
    location ^~ /.well-known/acme-challenge/ { root /var/lib/acme/acme-challenge; }
    location / { return 301 https://$host$request_uri; }
  }
  server {
    listen 0.0.0.0:443 ssl;
    server_name m.example.org;
    location ~ ^/_matrix/client/(.*)/(login|logout|refresh) {
      proxy_pass http://127.0.0.1:8080;
      rewrite ^(.*)$ /auth$1 break;
      include /nix/store/x-nginx-recommended-proxy-headers.conf;
    }
    location = /.well-known/matrix/client {
      default_type application/json;
      return 200 '{"m.homeserver":{"base_url":"https://m.example.org"},"x":"a;b}"}';
    }
  }
}
"#;
        let r = routes(conf).unwrap();
        let m = &r["m.example.org"];
        assert_eq!(m.len(), 2);
        let login = &m["~ ^/_matrix/client/(.*)/(login|logout|refresh)"];
        assert_eq!(login.proxy_pass.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(
            login.extra_config.as_deref(),
            Some("rewrite ^(.*)$ /auth$1 break;")
        );
        let wk = &m["= /.well-known/matrix/client"];
        assert_eq!(
            wk.return_value.as_deref(),
            Some(r#"200 '{"m.homeserver":{"base_url":"https://m.example.org"},"x":"a;b}"}'"#)
        );
        assert_eq!(
            normalize(&RouteTarget {
                proxy_pass: None,
                return_value: None,
                extra_config: Some(
                    "default_type   application/json;\nproxy_set_header Host $host;".into()
                ),
            })
            .extra_config
            .as_deref(),
            Some("default_type application/json;")
        );
    }

    #[test]
    fn unbalanced_braces_are_errors() {
        assert!(routes("server {").is_err());
        assert!(routes("}").is_err());
    }
}
