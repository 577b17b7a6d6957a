//! Lexing and parsing of the Go text/template subset (see the parent module
//! for what is supported). The tree is checked completely at parse time
//! (unknown functions, unbalanced blocks), as Go's `template.Parse` does, so a
//! rule file with a broken template is rejected when it is loaded.

use super::funcs;

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

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Var(String),
    Field(String),
    Dot,
    Str(String),
    Num(String),
    Pipe,
    Open,
    Close,
    Declare,
    Comma,
}

/// A token and whether whitespace preceded it (`$x.y` vs `$x .y`).
type Spaced = (Tok, bool);

enum Item {
    Text(String),
    Action(Vec<Spaced>),
}

/// Splits the text into literal text and action token lists, applying the
/// `{{- ` / ` -}}` trim markers and dropping comments.
fn lex(src: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while !rest.is_empty() {
        let open = rest.find("{{");
        let mut text = &rest[..open.unwrap_or(rest.len())];
        if trim_next {
            text = text.trim_start();
        }
        let Some(open) = open else {
            push_text(&mut items, text);
            break;
        };
        let after = &rest[open + 2..];
        // `{{- ` trims; `{{-3}}` is the number -3.
        let trim_before = after.starts_with('-') && after[1..].starts_with(char::is_whitespace);
        if trim_before {
            text = text.trim_end();
        }
        push_text(&mut items, text);
        let body = if trim_before { &after[2..] } else { after };
        let (tokens, used, trim_after) = lex_action(body)?;
        if !tokens.is_empty() {
            items.push(Item::Action(tokens));
        }
        trim_next = trim_after;
        rest = &body[used..];
    }
    Ok(items)
}

fn push_text(items: &mut Vec<Item>, text: &str) {
    if !text.is_empty() {
        items.push(Item::Text(text.to_string()));
    }
}

/// Tokens of one action up to its `}}`: (tokens, bytes used incl. `}}`,
/// whether it ended with ` -}}`).
fn lex_action(s: &str) -> Result<(Vec<Spaced>, usize, bool), String> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let mut space = true;
    // A comment fills the whole action.
    let lead = s.len() - s.trim_start().len();
    if s[lead..].starts_with("/*") {
        let end = s[lead..].find("*/").ok_or("unclosed comment")? + lead + 2;
        let tail = &s[end..];
        let trimmed = tail.trim_start();
        if let Some(r) = trimmed.strip_prefix("-}}") {
            let _ = r;
            return Ok((out, s.len() - trimmed.len() + 3, true));
        }
        if trimmed.starts_with("}}") {
            return Ok((out, s.len() - trimmed.len() + 2, false));
        }
        return Err("comment ends before closing delimiter".into());
    }
    loop {
        let Some(&c) = bytes.get(i) else {
            return Err("unclosed action".into());
        };
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                // ` -}}` closes with trimming.
                if s[i..].trim_start().starts_with("-}}") {
                    let j = i + (s[i..].len() - s[i..].trim_start().len());
                    return Ok((out, j + 3, true));
                }
                space = true;
                i += 1;
                continue;
            }
            b'}' if s[i..].starts_with("}}") => return Ok((out, i + 2, false)),
            b'|' => {
                out.push((Tok::Pipe, space));
                i += 1;
            }
            b'(' => {
                out.push((Tok::Open, space));
                i += 1;
            }
            b')' => {
                out.push((Tok::Close, space));
                i += 1;
            }
            b',' => {
                out.push((Tok::Comma, space));
                i += 1;
            }
            b':' if s[i..].starts_with(":=") => {
                out.push((Tok::Declare, space));
                i += 2;
            }
            b'=' => return Err("assignment to variables is not supported".into()),
            b'"' => {
                let (text, used) = lex_string(&s[i..])?;
                out.push((Tok::Str(text), space));
                i += used;
            }
            b'`' => {
                let end = s[i + 1..].find('`').ok_or("unterminated raw string")?;
                out.push((Tok::Str(s[i + 1..i + 1 + end].to_string()), space));
                i += end + 2;
            }
            b'$' => {
                let n = ident_len(&s[i + 1..]);
                out.push((Tok::Var(s[i + 1..i + 1 + n].to_string()), space));
                i += 1 + n;
            }
            b'.' => {
                let n = ident_len(&s[i + 1..]);
                if n == 0 {
                    if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                        let n = num_len(&s[i..]);
                        out.push((Tok::Num(s[i..i + n].to_string()), space));
                        i += n;
                        space = false;
                        continue;
                    }
                    out.push((Tok::Dot, space));
                    i += 1;
                } else {
                    out.push((Tok::Field(s[i + 1..i + 1 + n].to_string()), space));
                    i += 1 + n;
                }
            }
            b'0'..=b'9' | b'-' | b'+' => {
                let n = num_len(&s[i..]);
                if n == 0 {
                    return Err(format!("unexpected {:?} in action", c as char));
                }
                out.push((Tok::Num(s[i..i + n].to_string()), space));
                i += n;
            }
            c if c == b'_' || c.is_ascii_alphabetic() => {
                let n = ident_len(&s[i..]);
                out.push((Tok::Ident(s[i..i + n].to_string()), space));
                i += n;
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or('?');
                return Err(format!("unexpected {ch:?} in action"));
            }
        }
        space = false;
    }
}

fn ident_len(s: &str) -> usize {
    s.bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count()
}

fn num_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let start = i;
    while let Some(&c) = b.get(i) {
        let exp_sign = matches!(c, b'-' | b'+') && matches!(b.get(i - 1), Some(b'e' | b'E'));
        if c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || exp_sign {
            i += 1;
        } else {
            break;
        }
    }
    if i == start { 0 } else { i }
}

/// A Go interpreted string literal at the start of `s`: (value, bytes used).
fn lex_string(s: &str) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\n' => break,
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some('\'') => out.push('\''),
                Some(other) => return Err(format!("unsupported escape \\{other} in string")),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("unterminated quoted string".into())
}

/// Parses a whole template.
pub(super) fn parse(src: &str) -> Result<List, String> {
    let items = lex(src)?;
    let mut pos = 0;
    let (list, end) = parse_list(&items, &mut pos)?;
    match end {
        None => Ok(list),
        Some(kw) => Err(format!("unexpected {{{{{kw}}}}}")),
    }
}

/// Nodes up to an `else` / `end` (returned, with the tokens after `else`
/// kept in `pending_else`) or the end of input.
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
            Tok::Open => depth += 1,
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
