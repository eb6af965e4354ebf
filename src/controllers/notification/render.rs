//! A Notification's subject and body as minijinja templates, rendered once per
//! recipient. Pure.
//!
//! Variables:
//! - `user`: the recipient; prints as the full name (or the username). Fields
//!   `username`, `name`, `email`.
//! - `instances`: the recipient's affected instances; prints as their names joined by
//!   ", ", iterates as instances with `name`, `cluster`, `status`, `os`, `node`, `ips`,
//!   `vcpus`, `memory` (MiB), `disk` (MiB). An instance prints as its name.
//! - `cluster`: the GanetiCluster the mail is about: the only one named in the
//!   selectors, else the only one the recipient's instances are on, else "".
//!
//! Undefined variables are errors (a typo must not mail hundreds of people a blank),
//! and a fuel limit stops a runaway loop.

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{Environment, UndefinedBehavior};
use std::fmt;
use std::sync::Arc;

/// Template steps one rendering may take; far above any real mail.
const FUEL: u64 = 500_000;

/// What one recipient's mail is rendered from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MailContext {
    pub user: UserInfo,
    pub instances: Vec<InstanceInfo>,
    pub cluster: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserInfo {
    pub username: String,
    /// Full name, or the username when the profile has none.
    pub name: String,
    pub email: String,
}

/// One instance as a template sees it. Instances that vanished since the recipients
/// were resolved have only `name` and `cluster` (status `unknown`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InstanceInfo {
    pub name: String,
    pub cluster: String,
    pub status: String,
    pub os: String,
    pub node: String,
    pub ips: Vec<String>,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_mib: u64,
}

impl From<(&str, &crate::inventory::Instance)> for InstanceInfo {
    fn from((cluster, i): (&str, &crate::inventory::Instance)) -> Self {
        Self {
            name: i.name.clone(),
            cluster: cluster.to_string(),
            status: i.status.clone(),
            os: i.os.clone(),
            node: i.primary_node.clone(),
            ips: i.ips.clone(),
            vcpus: i.vcpus,
            memory_mib: i.memory_mib,
            disk_mib: i.disk_mib,
        }
    }
}

#[derive(Debug)]
struct UserValue(UserInfo);

impl Object for UserValue {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(Value::from(match key.as_str()? {
            "username" => self.0.username.as_str(),
            "name" => self.0.name.as_str(),
            "email" => self.0.email.as_str(),
            _ => return None,
        }))
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["username", "name", "email"])
    }
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.name)
    }
}

#[derive(Debug)]
struct InstanceValue(InstanceInfo);

impl Object for InstanceValue {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let i = &self.0;
        Some(match key.as_str()? {
            "name" => Value::from(i.name.as_str()),
            "cluster" => Value::from(i.cluster.as_str()),
            "status" => Value::from(i.status.as_str()),
            "os" => Value::from(i.os.as_str()),
            "node" => Value::from(i.node.as_str()),
            "ips" => Value::from(i.ips.clone()),
            "vcpus" => Value::from(i.vcpus),
            "memory" => Value::from(i.memory_mib),
            "disk" => Value::from(i.disk_mib),
            _ => return None,
        })
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&[
            "name", "cluster", "status", "os", "node", "ips", "vcpus", "memory", "disk",
        ])
    }
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.name)
    }
}

#[derive(Debug)]
struct InstanceList(Vec<Value>);

impl Object for InstanceList {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.get(key.as_usize()?).cloned()
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.0.len())
    }
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, i) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{i}")?;
        }
        Ok(())
    }
}

impl MailContext {
    fn to_value(&self) -> Value {
        let instances: Vec<Value> = self
            .instances
            .iter()
            .map(|i| Value::from_object(InstanceValue(i.clone())))
            .collect();
        Value::from_pairs([
            ("user", Value::from_object(UserValue(self.user.clone()))),
            ("instances", Value::from_object(InstanceList(instances))),
            ("cluster", Value::from(self.cluster.as_str())),
        ])
    }
}

/// A subject and body that compiled.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Templates")
    }
}

/// A template error, in words for a condition message.
fn describe(what: &str, e: &minijinja::Error) -> String {
    let mut out = format!("{what}: {}", e.kind());
    if let Some(detail) = e.detail() {
        out.push_str(": ");
        out.push_str(detail);
    }
    if let Some(line) = e.line() {
        out.push_str(&format!(" (line {line})"));
    }
    out
}

impl Templates {
    /// Compiles both templates; the error says which one and where.
    pub fn compile(subject: &str, body: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        // Plain-text mail: block tags on their own lines leave no blank lines behind.
        env.set_syntax(
            SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .keep_trailing_newline(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        env.add_template_owned("subject", subject.to_string())
            .map_err(|e| describe("subject", &e))?;
        env.add_template_owned("body", body.to_string())
            .map_err(|e| describe("body", &e))?;
        Ok(Self { env })
    }

    /// One recipient's subject (on one line) and body.
    pub fn render(&self, ctx: &MailContext) -> Result<(String, String), String> {
        let value = ctx.to_value();
        let render = |name: &str| {
            self.env
                .get_template(name)
                .and_then(|t| t.render(&value))
                .map_err(|e| describe(name, &e))
        };
        let subject = render("subject")?
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if subject.is_empty() {
            return Err("subject: renders empty".into());
        }
        Ok((subject, render("body")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> MailContext {
        MailContext {
            user: UserInfo {
                username: "alice".into(),
                name: "Alice Liddell".into(),
                email: "alice@example.org".into(),
            },
            instances: vec![
                InstanceInfo {
                    name: "a1.example.org".into(),
                    cluster: "c1".into(),
                    status: "running".into(),
                    ips: vec!["198.51.100.5".into()],
                    memory_mib: 512,
                    ..Default::default()
                },
                InstanceInfo {
                    name: "a2.example.org".into(),
                    cluster: "c1".into(),
                    ..Default::default()
                },
            ],
            cluster: "c1".into(),
        }
    }

    #[test]
    fn variables_print_naturally_and_iterate() {
        let t = Templates::compile(
            "Maintenance on {{ cluster }} for {{ user }}",
            "Dear {{ user.name }} ({{ user.username }}),\nyour VMs {{ instances }} are affected.\n\
             {% for i in instances %}- {{ i }} {{ i.status }} {{ i.ips|join(',') }} {{ i.memory }}\n{% endfor %}\
             {{ instances|length }} in all; {{ instances|join(' & ') }}\n",
        )
        .unwrap();
        let (subject, body) = t.render(&ctx()).unwrap();
        assert_eq!(subject, "Maintenance on c1 for Alice Liddell");
        assert_eq!(
            body,
            "Dear Alice Liddell (alice),\nyour VMs a1.example.org, a2.example.org are affected.\n\
             - a1.example.org running 198.51.100.5 512\n- a2.example.org   0\n\
             2 in all; a1.example.org & a2.example.org\n"
        );
    }

    #[test]
    fn a_syntax_error_names_the_template_and_line() {
        let e = Templates::compile("ok", "line one\n{% for i in instances %}never closed").unwrap_err();
        assert!(e.starts_with("body: syntax error"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn an_undefined_variable_is_an_error_not_a_blank() {
        let t = Templates::compile("Hello {{ usr }}", "body").unwrap();
        let e = t.render(&ctx()).unwrap_err();
        assert!(e.starts_with("subject: undefined value"), "{e}");
        let t = Templates::compile("s", "{{ user.phone }}").unwrap();
        assert!(t.render(&ctx()).is_err());
    }

    #[test]
    fn a_runaway_loop_runs_out_of_fuel() {
        let t = Templates::compile(
            "s",
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        )
        .unwrap();
        let e = t.render(&ctx()).unwrap_err();
        assert!(e.contains("fuel"), "{e}");
    }

    #[test]
    fn the_subject_is_one_line_and_not_empty() {
        let t = Templates::compile("a\nb  {{ cluster }}", "x").unwrap();
        assert_eq!(t.render(&ctx()).unwrap().0, "a b c1");
        let t = Templates::compile("{% if false %}x{% endif %}", "x").unwrap();
        assert!(t.render(&ctx()).is_err());
    }

    #[test]
    fn no_html_escaping_in_plain_text() {
        let mut c = ctx();
        c.user.name = "Tom & <Jerry>".into();
        let t = Templates::compile("s", "{{ user }}").unwrap();
        assert_eq!(t.render(&c).unwrap().1, "Tom & <Jerry>");
    }
}
