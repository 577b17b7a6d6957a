//! Lexing and parsing of the Go text/template subset (see the parent module
//! for what is supported). The tree is checked completely at parse time
//! (unknown functions, unbalanced blocks), as Go's `template.Parse` does, so a
//! rule file with a broken template is rejected when it is loaded.

use super::funcs;
use super::lex::{Item, Spaced, Tok, lex};

/// A parsed template: a list of nodes.
pub(super) type List = Vec<Node>;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Text(String),
    Action(Pipe),
    /// `if` / `else if` arms, then the `else` list.
    If(Vec<(Pipe, List)>, List),
    /// `with`: the pipe's value becomes dot in the body when it is true.
    With(Pipe, List, List),
    /// `range`: over a map's values in key order.
    Range(Pipe, List, List),
}

/// `$a, $b := cmd | cmd ...`
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Pipe {
    pub decl: Vec<String>,
    pub cmds: Vec<Vec<Arg>>,
}

/// One operand; `fields` are the `.a.b` chain applied after it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Arg {
    /// `.` or `.a.b` (on dot).
    Dot(Vec<String>),
    /// `$name.a.b` (`$` alone is the root data).
    Var(String, Vec<String>),
    Func(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    /// `( pipeline ).a.b`
    Sub(Box<Pipe>, Vec<String>),
}

/// Parses a whole template.
pub(super) fn parse(src: &str) -> Result<List, String> {
    let items = lex(src)?;
    let mut pos = 0;
    check_nesting(&items)?;
    let (list, end) = parse_list(&items, &mut pos)?;
    match end {
        None => Ok(list),
        Some(kw) => Err(format!("unexpected {{{{{kw}}}}}")),
    }
}

/// Nodes up to an `else` / `end` (returned, with the tokens after `else`
/// kept in `pending_else`) or the end of input.
/// How deeply blocks and parentheses may nest: parsing and running recurse,
/// and a rule file must not be able to overflow the stack.
const MAX_NESTING: usize = 64;

fn check_nesting(items: &[Item]) -> Result<(), String> {
    let mut depth = 0usize;
    for item in items {
        if let Item::Action(toks) = item {
            match toks.first().map(|t| &t.0) {
                Some(Tok::Ident(kw)) if matches!(kw.as_str(), "if" | "with" | "range") => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Err(format!("blocks nested deeper than {MAX_NESTING}"));
                    }
                }
                Some(Tok::Ident(kw)) if kw == "end" => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    Ok(())
}

fn parse_list(items: &[Item], pos: &mut usize) -> Result<(List, Option<String>), String> {
    let mut list = Vec::new();
    while let Some(item) = items.get(*pos) {
        *pos += 1;
        let toks = match item {
            Item::Text(t) => {
                list.push(Node::Text(t.clone()));
                continue;
            }
            Item::Action(toks) => toks,
        };
        match toks.first().map(|t| &t.0) {
            Some(Tok::Ident(kw)) if kw == "end" || kw == "else" => {
                if kw == "end" && toks.len() > 1 {
                    return Err("unexpected tokens after end".into());
                }
                // `else if ...`: hand the remainder back through the kw.
                let rest: Vec<String> = toks[1..].iter().map(|t| tok_text(&t.0)).collect();
                let kw = if rest.is_empty() {
                    kw.clone()
                } else {
                    format!("{kw} {}", rest.join(" "))
                };
                *pos -= 1;
                return Ok((list, Some(kw)));
            }
            Some(Tok::Ident(kw)) if matches!(kw.as_str(), "if" | "with" | "range") => {
                let kw = kw.clone();
                let pipe = parse_pipe(&toks[1..])?;
                list.push(parse_block(&kw, pipe, items, pos)?);
            }
            Some(Tok::Ident(kw))
                if matches!(
                    kw.as_str(),
                    "define" | "template" | "block" | "break" | "continue"
                ) =>
            {
                return Err(format!("{{{{{kw}}}}} is not supported in Vigil templates"));
            }
            _ => list.push(Node::Action(parse_pipe(toks)?)),
        }
    }
    Ok((list, None))
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Ident(s) | Tok::Num(s) => s.clone(),
        Tok::Var(s) => format!("${s}"),
        Tok::Field(s) => format!(".{s}"),
        Tok::Dot => ".".into(),
        Tok::Str(s) => format!("{s:?}"),
        Tok::Pipe => "|".into(),
        Tok::Open => "(".into(),
        Tok::Close => ")".into(),
        Tok::Declare => ":=".into(),
        Tok::Comma => ",".into(),
    }
}

fn parse_block(kw: &str, pipe: Pipe, items: &[Item], pos: &mut usize) -> Result<Node, String> {
    let mut arms = vec![];
    let mut pipe = pipe;
    loop {
        let (body, end) = parse_list(items, pos)?;
        let Some(end) = end else {
            return Err(format!("unexpected EOF: {{{{{kw}}}}} without {{{{end}}}}"));
        };
        // The terminating action itself.
        let toks = match &items[*pos] {
            Item::Action(t) => t,
            Item::Text(_) => return Err("internal: terminator is text".into()),
        };
        *pos += 1;
        arms.push((pipe.clone(), body));
        if end == "end" {
            return Ok(build(kw, arms, Vec::new()));
        }
        // `else if` continues an if chain; plain `else` ends with a list.
        if kw == "if" && matches!(toks.get(1), Some((Tok::Ident(s), _)) if s == "if") {
            pipe = parse_pipe(&toks[2..])?;
            continue;
        }
        if toks.len() > 1 {
            return Err(format!("unsupported {{{{{end}}}}}"));
        }
        let (otherwise, end) = parse_list(items, pos)?;
        match end.as_deref() {
            Some("end") => {
                *pos += 1;
                return Ok(build(kw, arms, otherwise));
            }
            Some(other) => return Err(format!("expected {{{{end}}}}, got {{{{{other}}}}}")),
            None => return Err(format!("unexpected EOF: {{{{{kw}}}}} without {{{{end}}}}")),
        }
    }
}

fn build(kw: &str, mut arms: Vec<(Pipe, List)>, otherwise: List) -> Node {
    match kw {
        "if" => Node::If(arms, otherwise),
        _ => {
            let (pipe, body) = arms.remove(0);
            if kw == "with" {
                Node::With(pipe, body, otherwise)
            } else {
                Node::Range(pipe, body, otherwise)
            }
        }
    }
}

fn parse_pipe(toks: &[Spaced]) -> Result<Pipe, String> {
    let mut decl = Vec::new();
    let mut i = 0;
    // `$x :=` or `$k, $v :=`
    let declares = toks.iter().position(|t| t.0 == Tok::Declare);
    if let Some(d) = declares {
        for (j, t) in toks[..d].iter().enumerate() {
            match (&t.0, j % 2) {
                (Tok::Var(v), 0) => decl.push(v.clone()),
                (Tok::Comma, 1) => {}
                _ => return Err("bad variable declaration".into()),
            }
        }
        if decl.is_empty() || decl.len() > 2 {
            return Err("bad variable declaration".into());
        }
        i = d + 1;
    }
    let mut cmds = Vec::new();
    let mut cmd = Vec::new();
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Pipe => {
                if cmd.is_empty() {
                    return Err("missing command before |".into());
                }
                cmds.push(std::mem::take(&mut cmd));
                i += 1;
            }
            _ => cmd.push(parse_operand(toks, &mut i)?),
        }
    }
    if cmd.is_empty() {
        return Err("missing value for command".into());
    }
    cmds.push(cmd);
    for c in cmds.iter().skip(1) {
        if !matches!(c[0], Arg::Func(_)) {
            return Err("non-function in a pipeline after |".into());
        }
    }
    Ok(Pipe { decl, cmds })
}

fn parse_operand(toks: &[Spaced], i: &mut usize) -> Result<Arg, String> {
    let (tok, _) = &toks[*i];
    *i += 1;
    let arg = match tok {
        Tok::Ident(name) => match name.as_str() {
            "true" => Arg::Bool(true),
            "false" => Arg::Bool(false),
            "nil" => Arg::Nil,
            _ => {
                funcs::check_name(name)?;
                return Ok(Arg::Func(name.clone()));
            }
        },
        Tok::Var(v) => Arg::Var(v.clone(), fields(toks, i)),
        Tok::Dot => Arg::Dot(fields(toks, i)),
        Tok::Field(f) => {
            let mut chain = vec![f.clone()];
            chain.extend(fields(toks, i));
            Arg::Dot(chain)
        }
        Tok::Str(s) => Arg::Str(s.clone()),
        Tok::Num(n) => parse_number(n)?,
        Tok::Open => {
            let depth_end = matching_close(toks, *i)?;
            let inner = parse_pipe(&toks[*i..depth_end])?;
            *i = depth_end + 1;
            Arg::Sub(Box::new(inner), fields(toks, i))
        }
        other => return Err(format!("unexpected {:?} in operand", tok_text(other))),
    };
    Ok(arg)
}

/// A `.a.b` chain directly attached (no whitespace) to the previous token.
fn fields(toks: &[Spaced], i: &mut usize) -> Vec<String> {
    let mut out = Vec::new();
    while let Some((Tok::Field(f), false)) = toks.get(*i) {
        out.push(f.clone());
        *i += 1;
    }
    out
}

fn matching_close(toks: &[Spaced], from: usize) -> Result<usize, String> {
    let mut depth = 1;
    for (j, (t, _)) in toks.iter().enumerate().skip(from) {
        match t {
            Tok::Open => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(format!("parentheses nested deeper than {MAX_NESTING}"));
                }
            }
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    return Ok(j);
                }
            }
            _ => {}
        }
    }
    Err("unclosed left paren".into())
}

fn parse_number(n: &str) -> Result<Arg, String> {
    let clean = n.replace('_', "");
    let (neg, digits) = match clean.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let int = if let Some(hex) = digits.strip_prefix("0x").or(digits.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16).ok()
    } else {
        digits.parse::<i64>().ok()
    };
    if let Some(v) = int {
        return Ok(Arg::Int(if neg { -v } else { v }));
    }
    clean
        .parse::<f64>()
        .map(Arg::Float)
        .map_err(|_| format!("bad number syntax: {n:?}"))
}
