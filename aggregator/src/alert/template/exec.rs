//! Executing a parsed template against the alert's data.

use std::collections::BTreeMap;

use super::parse::{Arg, List, Node, Pipe};
use super::{TemplateData, funcs, gofmt};

/// A template value (Go's dynamic values, reduced to what templates see).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A `map[string]string` (label sets); a missing key reads as "".
    Map(BTreeMap<String, String>),
    /// The root data (`.Labels`, `.Value`, ...): a missing field is an error.
    Root(BTreeMap<String, Val>),
    Nil,
}

impl Val {
    /// Go's type name, as `printf` shows it in `%!d(float64=1.5)`.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Val::Str(_) => "string",
            Val::Int(_) => "int",
            Val::Float(_) => "float64",
            Val::Bool(_) => "bool",
            Val::Map(_) => "map[string]string",
            Val::Root(_) => "struct",
            Val::Nil => "<nil>",
        }
    }

    /// `fmt.Sprint(v)`.
    pub(crate) fn display(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => gofmt::float_v(*f),
            Val::Bool(b) => b.to_string(),
            Val::Map(m) => {
                let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("map[{}]", parts.join(" "))
            }
            Val::Root(m) => {
                let parts: Vec<String> = m.values().map(Val::display).collect();
                format!("{{{}}}", parts.join(" "))
            }
            Val::Nil => "<no value>".into(),
        }
    }

    /// Go's truth: false, 0, "", empty map and nil are false.
    pub(crate) fn truthy(&self) -> bool {
        match self {
            Val::Str(s) => !s.is_empty(),
            Val::Int(i) => *i != 0,
            Val::Float(f) => *f != 0.0,
            Val::Bool(b) => *b,
            Val::Map(m) => !m.is_empty(),
            Val::Root(_) => true,
            Val::Nil => false,
        }
    }
}

/// The data every template sees, and the variables Prometheus predefines.
pub(super) fn root(data: &TemplateData<'_>) -> (Val, Vec<(String, Val)>) {
    let labels = Val::Map(data.labels.clone());
    let external = Val::Map(data.external_labels.clone());
    let url = Val::Str(data.external_url.to_string());
    let value = Val::Float(data.value);
    let root = Val::Root(BTreeMap::from([
        ("Labels".to_string(), labels.clone()),
        ("ExternalLabels".to_string(), external.clone()),
        ("ExternalURL".to_string(), url.clone()),
        ("Value".to_string(), value.clone()),
    ]));
    let vars = vec![
        (String::new(), root.clone()),
        ("labels".to_string(), labels),
        ("externalLabels".to_string(), external),
        ("externalURL".to_string(), url),
        ("value".to_string(), value),
    ];
    (root, vars)
}

/// Longest output a template may produce: a runaway `range` or `printf`
/// width cannot blow up an annotation.
const MAX_OUTPUT: usize = 64 * 1024;

pub(super) struct Exec {
    vars: Vec<(String, Val)>,
    out: String,
}

impl Exec {
    pub(super) fn new(vars: Vec<(String, Val)>) -> Self {
        Exec {
            vars,
            out: String::new(),
        }
    }

    pub(super) fn finish(self) -> String {
        self.out
    }

    pub(super) fn list(&mut self, list: &List, dot: &Val) -> Result<(), String> {
        for node in list {
            self.node(node, dot)?;
            if self.out.len() > MAX_OUTPUT {
                return Err(format!("output longer than {MAX_OUTPUT} bytes"));
            }
        }
        Ok(())
    }

    /// Runs `list` in a variable scope: declarations inside do not leak.
    fn scoped(&mut self, list: &List, dot: &Val) -> Result<(), String> {
        let mark = self.vars.len();
        let r = self.list(list, dot);
        self.vars.truncate(mark);
        r
    }

    fn node(&mut self, node: &Node, dot: &Val) -> Result<(), String> {
        match node {
            Node::Text(t) => self.out.push_str(t),
            Node::Action(p) => {
                let v = self.pipe(p, dot)?;
                if p.decl.is_empty() {
                    self.out.push_str(&v.display());
                }
            }
            Node::If(arms, otherwise) => {
                let mark = self.vars.len();
                let mut chosen = None;
                for (cond, body) in arms {
                    if self.pipe(cond, dot)?.truthy() {
                        chosen = Some(body);
                        break;
                    }
                }
                let r = self.list(chosen.unwrap_or(otherwise), dot);
                self.vars.truncate(mark);
                r?;
            }
            Node::With(p, body, otherwise) => {
                let mark = self.vars.len();
                let v = self.pipe(p, dot)?;
                let r = if v.truthy() {
                    self.list(body, &v)
                } else {
                    self.list(otherwise, dot)
                };
                self.vars.truncate(mark);
                r?;
            }
            Node::Range(p, body, otherwise) => {
                let mark = self.vars.len();
                let v = self.pipe(
                    &Pipe {
                        decl: vec![],
                        cmds: p.cmds.clone(),
                    },
                    dot,
                )?;
                let entries: Vec<(String, String)> = match v {
                    Val::Map(m) => m.into_iter().collect(),
                    Val::Nil => Vec::new(),
                    other => return Err(format!("range can't iterate over {}", other.display())),
                };
                if entries.is_empty() {
                    self.scoped(otherwise, dot)?;
                }
                for (k, val) in entries {
                    let inner = self.vars.len();
                    match p.decl.as_slice() {
                        [v] => self.vars.push((v.clone(), Val::Str(val.clone()))),
                        [k_name, v] => {
                            self.vars.push((k_name.clone(), Val::Str(k)));
                            self.vars.push((v.clone(), Val::Str(val.clone())));
                        }
                        _ => {}
                    }
                    self.scoped(body, &Val::Str(val))?;
                    self.vars.truncate(inner);
                }
                self.vars.truncate(mark);
            }
        }
        Ok(())
    }

    fn pipe(&mut self, p: &Pipe, dot: &Val) -> Result<Val, String> {
        let mut piped: Option<Val> = None;
        for cmd in &p.cmds {
            piped = Some(self.command(cmd, dot, piped)?);
        }
        let v = piped.unwrap_or(Val::Nil);
        for name in &p.decl {
            self.vars.push((name.clone(), v.clone()));
        }
        Ok(v)
    }

    fn command(&mut self, cmd: &[Arg], dot: &Val, piped: Option<Val>) -> Result<Val, String> {
        if let Some(Arg::Func(name)) = cmd.first() {
            let mut args = Vec::with_capacity(cmd.len());
            for a in &cmd[1..] {
                args.push(self.arg(a, dot)?);
            }
            args.extend(piped);
            return funcs::call(name, &args);
        }
        if cmd.len() > 1 || piped.is_some() {
            return Err("can't give argument to non-function".into());
        }
        self.arg(&cmd[0], dot)
    }

    fn arg(&mut self, a: &Arg, dot: &Val) -> Result<Val, String> {
        Ok(match a {
            Arg::Dot(chain) => fields(dot.clone(), chain)?,
            Arg::Var(name, chain) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| format!("undefined variable: ${name}"))?;
                fields(v, chain)?
            }
            // A function as an operand with no arguments is a call.
            Arg::Func(name) => funcs::call(name, &[])?,
            Arg::Str(s) => Val::Str(s.clone()),
            Arg::Int(i) => Val::Int(*i),
            Arg::Float(f) => Val::Float(*f),
            Arg::Bool(b) => Val::Bool(*b),
            Arg::Nil => return Err("nil is not a command".into()),
            Arg::Sub(p, chain) => {
                let v = self.pipe(p, dot)?;
                fields(v, chain)?
            }
        })
    }
}

fn fields(mut v: Val, chain: &[String]) -> Result<Val, String> {
    for f in chain {
        v = match v {
            // missingkey=zero, as Prometheus sets it.
            Val::Map(m) => Val::Str(m.get(f).cloned().unwrap_or_default()),
            Val::Root(m) => m
                .get(f)
                .cloned()
                .ok_or_else(|| format!("can't evaluate field {f} in the alert data (fields: Labels, ExternalLabels, ExternalURL, Value)"))?,
            Val::Nil => Val::Nil,
            other => {
                return Err(format!(
                    "can't evaluate field {f} in type {}",
                    other.type_name()
                ));
            }
        };
    }
    Ok(v)
}
