//! Rendering the CNI configuration template once the kubelet hands over the pod CIDR.
//!
//! Templates use the Go text/template subset that CNI conflist templates written for
//! containerd use, so operators can keep theirs:
//!   `{{.PodCIDR}}`                                   the first pod CIDR
//!   `{{range $i, $r := .PodCIDRRanges}}…{{end}}`     once per pod CIDR (`{{$r}}` inside)
//!   `{{range $i, $r := .Routes}}…{{end}}`            once per default route (0.0.0.0/0, ::/0)
//!   `{{range .Routes}}{{.}}{{end}}`                  the same without variables
//!   `{{if $i}}, {{end}}`                             inside a range: a separator
//! `{{-` and `-}}` trim the whitespace beside the action, as in Go. Anything else is
//! refused with the action named, rather than rendered into a broken configuration.

use std::net::IpAddr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("unclosed action starting at byte {0}")]
    Unclosed(usize),
    #[error("unsupported action {{{{{0}}}}}")]
    Unsupported(String),
    #[error("{{{{{0}}}}} has no matching {{{{end}}}}")]
    NoEnd(String),
    #[error("{{{{end}}}} without an opening range or if")]
    StrayEnd,
}

/// What a template is rendered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Values {
    pub pod_cidrs: Vec<Cidr>,
}

impl Values {
    /// One default route per address family present, as pods need to leave the node.
    pub fn routes(&self) -> Vec<String> {
        let mut routes = Vec::new();
        if self.pod_cidrs.iter().any(|c| c.addr.is_ipv4()) {
            routes.push("0.0.0.0/0".to_string());
        }
        if self.pod_cidrs.iter().any(|c| c.addr.is_ipv6()) {
            routes.push("::/0".to_string());
        }
        routes
    }
}

/// An address with a prefix length, as the kubelet sends pod CIDRs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::str::FromStr for Cidr {
    type Err = ();

    fn from_str(text: &str) -> Result<Cidr, ()> {
        let (addr, prefix) = text.trim().split_once('/').ok_or(())?;
        let addr: IpAddr = addr.parse().map_err(|_| ())?;
        // Digits only: u8's parser would also take a leading '+'.
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        let prefix: u8 = prefix.parse().map_err(|_| ())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(());
        }
        Ok(Cidr { addr, prefix })
    }
}

/// Parses the kubelet's `pod_cidr`: one CIDR, or several separated by commas (dual stack).
/// Err carries the first part that is not a CIDR.
pub fn parse_pod_cidrs(text: &str) -> Result<Vec<Cidr>, String> {
    text.split(',')
        .map(|part| part.parse().map_err(|()| part.trim().to_string()))
        .collect()
}

#[derive(Debug, PartialEq)]
enum Node {
    Text(String),
    PodCidr,
    /// `$name` or `.` inside a range: the current element.
    Element,
    Range {
        list: List,
        index: Option<String>,
        body: Vec<Node>,
    },
    /// `{{if $i}}`: true past the first element of the enclosing range.
    IfIndex {
        body: Vec<Node>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum List {
    PodCidrRanges,
    Routes,
}

pub fn render(template: &str, values: &Values) -> Result<String, TemplateError> {
    let tokens = tokenize(template)?;
    let mut pos = 0;
    let nodes = parse(&tokens, &mut pos, &Scope::default(), None)?;
    let mut out = String::new();
    emit(&nodes, values, None, &mut out);
    Ok(out)
}

#[derive(Debug, PartialEq)]
enum Token {
    Text(String),
    Action(String),
}

fn tokenize(template: &str) -> Result<Vec<Token>, TemplateError> {
    let mut tokens = Vec::new();
    let mut rest = template;
    let mut offset = 0;
    let mut trim_next_text = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next_text {
            text = text.trim_start();
        }
        let inner_start = start + 2;
        let end = rest[inner_start..]
            .find("}}")
            .ok_or(TemplateError::Unclosed(offset + start))?
            + inner_start;
        let mut action = &rest[inner_start..end];
        if let Some(a) = action.strip_prefix('-') {
            text = text.trim_end();
            action = a;
        }
        trim_next_text = false;
        if let Some(a) = action.strip_suffix('-') {
            trim_next_text = true;
            action = a;
        }
        if !text.is_empty() {
            tokens.push(Token::Text(text.to_string()));
        }
        tokens.push(Token::Action(action.trim().to_string()));
        offset += end + 2;
        rest = &rest[end + 2..];
    }
    let text = if trim_next_text {
        rest.trim_start()
    } else {
        rest
    };
    if !text.is_empty() {
        tokens.push(Token::Text(text.to_string()));
    }
    Ok(tokens)
}

/// Variables visible inside a range.
#[derive(Debug, Default, Clone)]
struct Scope {
    in_range: bool,
    index: Option<String>,
    element: Option<String>,
}

fn parse(
    tokens: &[Token],
    pos: &mut usize,
    scope: &Scope,
    opened_by: Option<&str>,
) -> Result<Vec<Node>, TemplateError> {
    let mut nodes = Vec::new();
    while *pos < tokens.len() {
        let token = &tokens[*pos];
        *pos += 1;
        let action = match token {
            Token::Text(text) => {
                nodes.push(Node::Text(text.clone()));
                continue;
            }
            Token::Action(action) => action.as_str(),
        };
        let unsupported = || TemplateError::Unsupported(action.to_string());
        if action == "end" {
            return match opened_by {
                Some(_) => Ok(nodes),
                None => Err(TemplateError::StrayEnd),
            };
        }
        if action.starts_with("/*") && action.ends_with("*/") {
            continue;
        }
        if action == ".PodCIDR" {
            nodes.push(Node::PodCidr);
        } else if scope.in_range && (action == "." || scope.element.as_deref() == Some(action)) {
            nodes.push(Node::Element);
        } else if let Some(spec) = action.strip_prefix("range ") {
            let (index, element, list) = range_spec(spec.trim()).ok_or_else(unsupported)?;
            let inner = Scope {
                in_range: true,
                index: index.clone(),
                element,
            };
            let body = parse(tokens, pos, &inner, Some(action))?;
            nodes.push(Node::Range { list, index, body });
        } else if let Some(cond) = action.strip_prefix("if ") {
            if scope.index.as_deref() != Some(cond.trim()) {
                return Err(unsupported());
            }
            let body = parse(tokens, pos, scope, Some(action))?;
            nodes.push(Node::IfIndex { body });
        } else {
            return Err(unsupported());
        }
    }
    match opened_by {
        Some(action) => Err(TemplateError::NoEnd(action.to_string())),
        None => Ok(nodes),
    }
}

/// `$i, $r := .List`, `$r := .List` or `.List`.
fn range_spec(spec: &str) -> Option<(Option<String>, Option<String>, List)> {
    let (vars, list) = match spec.split_once(":=") {
        Some((vars, list)) => (Some(vars.trim()), list.trim()),
        None => (None, spec),
    };
    let list = match list {
        ".PodCIDRRanges" => List::PodCidrRanges,
        ".Routes" => List::Routes,
        _ => return None,
    };
    let is_var = |v: &str| v.len() > 1 && v.starts_with('$');
    let (index, element) = match vars {
        None => (None, None),
        Some(vars) => match vars.split_once(',') {
            Some((i, e)) => (Some(i.trim()), Some(e.trim())),
            None => (None, Some(vars)),
        },
    };
    if !is_var(element.unwrap_or("$_")) || index.is_some_and(|i| !is_var(i)) {
        return None;
    }
    Some((index.map(str::to_string), element.map(str::to_string), list))
}

fn emit(nodes: &[Node], values: &Values, item: Option<(usize, &str)>, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::PodCidr => {
                if let Some(first) = values.pod_cidrs.first() {
                    out.push_str(&first.to_string());
                }
            }
            Node::Element => out.push_str(item.map(|(_, e)| e).unwrap_or_default()),
            Node::Range { list, body, .. } => {
                let items: Vec<String> = match list {
                    List::PodCidrRanges => values.pod_cidrs.iter().map(|c| c.to_string()).collect(),
                    List::Routes => values.routes(),
                };
                for (i, element) in items.iter().enumerate() {
                    emit(body, values, Some((i, element)), out);
                }
            }
            Node::IfIndex { body } => {
                if item.is_some_and(|(i, _)| i > 0) {
                    emit(body, values, item, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(cidrs: &str) -> Values {
        Values {
            pod_cidrs: parse_pod_cidrs(cidrs).unwrap(),
        }
    }

    #[test]
    fn pod_cidr_and_ranges_with_separators() {
        let template = r#"{"subnet": "{{.PodCIDR}}", "ranges": [{{range $i, $range := .PodCIDRRanges}}{{if $i}}, {{end}}[{"subnet": "{{$range}}"}]{{end}}], "routes": [{{range $i, $route := .Routes}}{{if $i}}, {{end}}{"dst": "{{$route}}"}{{end}}]}"#;
        assert_eq!(
            render(template, &values("10.1.0.0/24, fd00:1::/64")).unwrap(),
            r#"{"subnet": "10.1.0.0/24", "ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00:1::/64"}]], "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}"#
        );
        assert_eq!(
            render(template, &values("10.1.0.0/24")).unwrap(),
            r#"{"subnet": "10.1.0.0/24", "ranges": [[{"subnet": "10.1.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}"#
        );
    }

    #[test]
    fn dot_elements_and_trim_markers() {
        assert_eq!(
            render(
                "[ {{- range .Routes}}<{{.}}>{{end -}} ]",
                &values("10.0.0.0/8")
            )
            .unwrap(),
            "[<0.0.0.0/0>]"
        );
    }

    #[test]
    fn unknown_actions_and_unbalanced_blocks_are_refused() {
        let v = values("10.0.0.0/8");
        assert_eq!(
            render("{{.Nope}}", &v),
            Err(TemplateError::Unsupported(".Nope".to_string()))
        );
        assert!(matches!(
            render("{{range .Routes}}x", &v),
            Err(TemplateError::NoEnd(_))
        ));
        assert_eq!(render("x{{end}}", &v), Err(TemplateError::StrayEnd));
        assert!(matches!(
            render("{{.PodCIDR", &v),
            Err(TemplateError::Unclosed(0))
        ));
        // An element variable is only known inside its range.
        assert!(render("{{$r}}", &v).is_err());
    }

    #[test]
    fn cidrs_are_checked() {
        assert!(parse_pod_cidrs("10.0.0.0/33").is_err());
        assert!(parse_pod_cidrs("10.0.0/24").is_err());
        assert!(parse_pod_cidrs("10.0.0.0").is_err());
        assert!(parse_pod_cidrs("10.0.0.0/+8").is_err());
        assert_eq!(parse_pod_cidrs("nonsense"), Err("nonsense".to_string()));
        assert_eq!(parse_pod_cidrs("fd00::/129"), Err("fd00::/129".to_string()));
        assert_eq!(
            parse_pod_cidrs(" 10.2.0.0/16 ").unwrap()[0].to_string(),
            "10.2.0.0/16"
        );
    }
}
