//! Splitting a template into literal text and the tokens of each action,
//! applying the `{{- ` / ` -}}` trim markers and dropping comments.

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
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
pub(super) type Spaced = (Tok, bool);

pub(super) enum Item {
    Text(String),
    Action(Vec<Spaced>),
}

/// Splits the text into literal text and action token lists, applying the
/// `{{- ` / ` -}}` trim markers and dropping comments.
pub(super) fn lex(src: &str) -> Result<Vec<Item>, String> {
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
