//! Go's `fmt` number formatting, as far as templates need it: `%v` of a
//! float64 (what `{{ $value }}` prints), `%e`/`%f`/`%g` with flags, width and
//! precision (for `printf` and the `humanize*` helpers, which use `%.4g`).

use super::exec::Val;

/// `strconv.FormatFloat(v, 'g', -1, 64)`, i.e. `fmt.Sprint(v)`:
/// shortest digits, exponent form when the exponent is < -4 or >= 6
/// (Go's `ftoa.go` fixes 6 for the shortest precision).
pub(super) fn float_v(v: f64) -> String {
    format_g(v, None, false, SHORTEST_EPREC)
}

const SHORTEST_EPREC: i32 = 6;

/// `%.{prec}g` (`prec` None = shortest). `eprec_shortest` is the exponent
/// threshold used when `prec` is None.
fn format_g(v: f64, prec: Option<usize>, sharp: bool, eprec_shortest: i32) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let (digits, exp) = decimal_digits(v.abs(), prec.map(|p| p.max(1)));
    let neg = v.is_sign_negative() && v != 0.0 || (v == 0.0 && v.is_sign_negative());
    let eprec = match prec {
        None => eprec_shortest,
        Some(p) => {
            let p = p.max(1) as i32;
            // Go: if eprec > digits && digits >= dp { eprec = digits }
            let nd = digits.len() as i32;
            if p > nd && nd > exp { nd } else { p }
        }
    };
    let body = if exp < -4 || exp >= eprec {
        let mut m = digits.clone();
        if sharp {
            if let Some(p) = prec {
                while m.len() < p.max(1) {
                    m.push('0');
                }
            }
        }
        let mant = if m.len() > 1 {
            format!("{}.{}", &m[..1], &m[1..])
        } else {
            m
        };
        format!("{mant}e{}", exp_text(exp))
    } else {
        fixed_from_digits(&digits, exp)
    };
    if neg { format!("-{body}") } else { body }
}

fn exp_text(exp: i32) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{sign}{:02}", exp.abs())
}

/// Significant digits (no trailing zeros) and decimal exponent of `v >= 0`,
/// rounded to `prec` significant digits or shortest when None.
fn decimal_digits(v: f64, prec: Option<usize>) -> (String, i32) {
    if v == 0.0 {
        return ("0".into(), 0);
    }
    let s = match prec {
        Some(p) => format!("{:.*e}", p - 1, v),
        None => format!("{v:e}"),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    (digits, exp)
}

fn fixed_from_digits(digits: &str, exp: i32) -> String {
    if exp < 0 {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            format!("{digits}{}", "0".repeat(int_len - digits.len()))
        } else {
            format!("{}.{}", &digits[..int_len], &digits[int_len..])
        }
    }
}

fn special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "+Inf" } else { "-Inf" }.into())
    } else {
        None
    }
}

/// `%e` with precision `p`.
fn format_e(v: f64, p: usize) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let s = format!("{:.*e}", p, v);
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    format!("{mant}e{}", exp_text(exp.parse().unwrap_or(0)))
}

/// `fmt.Sprintf(format, args...)` for the verbs templates use:
/// `%v %s %d %f %F %e %E %g %G %q %x %X %t %%`, flags `- + space 0 #`,
/// width and precision. Mismatches print Go's `%!verb(type=value)` forms.
pub(super) fn sprintf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '0' => spec.zero = true,
                '#' => spec.sharp = true,
                _ => break,
            }
            chars.next();
        }
        spec.width = number(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(number(&mut chars).unwrap_or(0));
        }
        // A template must not allocate gigabytes through `%999999999d`.
        if spec.width.max(spec.prec).is_some_and(|n| n > MAX_WIDTH) {
            out.push_str("%!(BADWIDTH)");
            // The verb and its operand are used up all the same.
            if chars.next().is_some_and(|v| v != '%') {
                args.next();
            }
            continue;
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.next() {
            Some(arg) => out.push_str(&spec.pad(format_one(verb, &spec, arg))),
            None => out.push_str(&format!("%!{verb}(MISSING)")),
        }
    }
    let extra: Vec<String> = args
        .map(|a| format!("{}={}", a.type_name(), a.display()))
        .collect();
    if !extra.is_empty() {
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

/// Largest width or precision `printf` honours.
const MAX_WIDTH: usize = 1000;

fn number(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<usize> {
    let mut n: Option<usize> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize));
        chars.next();
    }
    n
}

#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    space: bool,
    zero: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

impl Spec {
    fn sign(&self, s: String) -> String {
        if s.starts_with('-') {
            s
        } else if self.plus {
            format!("+{s}")
        } else if self.space {
            format!(" {s}")
        } else {
            s
        }
    }

    fn pad(&self, s: String) -> String {
        let Some(w) = self.width else { return s };
        let len = s.chars().count();
        if len >= w {
            return s;
        }
        let fill = w - len;
        if self.minus {
            format!("{s}{}", " ".repeat(fill))
        } else if self.zero && s.starts_with(|c: char| c.is_ascii_digit() || "+- ".contains(c)) {
            let (sign, digits) = match s.chars().next() {
                Some(c @ ('+' | '-' | ' ')) => (c.to_string(), &s[1..]),
                _ => (String::new(), &s[..]),
            };
            format!("{sign}{}{digits}", "0".repeat(fill))
        } else {
            format!("{}{s}", " ".repeat(fill))
        }
    }
}

fn format_one(verb: char, spec: &Spec, arg: &Val) -> String {
    let bad = || format!("%!{verb}({}={})", arg.type_name(), arg.display());
    match (verb, arg) {
        ('v', _) => arg.display(),
        ('s', Val::Str(s)) => match spec.prec {
            Some(p) => s.chars().take(p).collect(),
            None => s.clone(),
        },
        ('s', Val::Map(_) | Val::Nil) => arg.display(),
        ('q', Val::Str(s)) => format!("{s:?}"),
        ('t', Val::Bool(b)) => b.to_string(),
        ('d', Val::Int(i)) => spec.sign(i.to_string()),
        ('x', Val::Int(i)) => spec.sign(hex(*i, false)),
        ('X', Val::Int(i)) => spec.sign(hex(*i, true)),
        ('x', Val::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
        ('X', Val::Str(s)) => s.bytes().map(|b| format!("{b:02X}")).collect(),
        ('f' | 'F' | 'e' | 'E' | 'g' | 'G', Val::Float(_) | Val::Int(_)) => {
            let v = match arg {
                Val::Float(f) => *f,
                Val::Int(i) => {
                    // Go refuses floats verbs on ints.
                    let _ = i;
                    return bad();
                }
                _ => return bad(),
            };
            let s = match verb {
                'f' | 'F' => {
                    special(v).unwrap_or_else(|| format!("{:.*}", spec.prec.unwrap_or(6), v))
                }
                'e' => format_e(v, spec.prec.unwrap_or(6)),
                'E' => format_e(v, spec.prec.unwrap_or(6)).to_uppercase(),
                'g' => format_g(v, spec.prec, spec.sharp, SHORTEST_EPREC),
                _ => format_g(v, spec.prec, spec.sharp, SHORTEST_EPREC).to_uppercase(),
            };
            spec.sign(s)
        }
        _ => bad(),
    }
}

fn hex(i: i64, upper: bool) -> String {
    let s = if upper {
        format!("{:X}", i.unsigned_abs())
    } else {
        format!("{:x}", i.unsigned_abs())
    };
    if i < 0 { format!("-{s}") } else { s }
}

/// `fmt.Sprintf("%.4g", v)`, the workhorse of the `humanize*` helpers.
pub(super) fn g4(v: f64) -> String {
    format_g(v, Some(4), false, SHORTEST_EPREC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_formatting_matches_go() {
        // fmt.Sprint(float64)
        for (v, want) in [
            (0.0, "0"),
            (1.0, "1"),
            (0.5, "0.5"),
            (1234567.0, "1.234567e+06"),
            (123456.0, "123456"),
            (1e21, "1e+21"),
            (999999.0, "999999"),
            (1e6, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
        ] {
            assert_eq!(float_v(v), want, "{v}");
        }
        // fmt.Sprintf("%.4g", v)
        for (v, want) in [
            (1.2345, "1.234"),
            (1234.5, "1234"),
            (12345.0, "1.234e+04"),
            (100.0, "100"),
            (0.00012345, "0.0001234"),
            (0.000012345, "1.234e-05"),
            (0.0, "0"),
        ] {
            assert_eq!(g4(v), want, "{v}");
        }
    }

    #[test]
    fn printf_verbs() {
        let f = |s: &str, a: &[Val]| sprintf(s, a);
        assert_eq!(f("%.2f", &[Val::Float(1.2345)]), "1.23");
        assert_eq!(
            f(
                "%5.1f|%-6d|%05d",
                &[Val::Float(2.74567), Val::Int(42), Val::Int(-7)]
            ),
            "  2.7|42    |-0007"
        );
        assert_eq!(
            f("%s is %v", &[Val::Str("x".into()), Val::Float(0.25)]),
            "x is 0.25"
        );
        assert_eq!(f("%e", &[Val::Float(123456.0)]), "1.234560e+05");
        assert_eq!(
            f("%g %G", &[Val::Float(1e-7), Val::Float(1e-7)]),
            "1e-07 1E-07"
        );
        assert_eq!(f("100%%", &[]), "100%");
        assert_eq!(f("%d", &[Val::Float(1.5)]), "%!d(float64=1.5)");
        assert_eq!(f("%999999999d|", &[Val::Int(1)]), "%!(BADWIDTH)|");
        assert_eq!(f("%d %d", &[Val::Int(1)]), "1 %!d(MISSING)");
        assert_eq!(
            f("%d", &[Val::Int(1), Val::Str("a".into())]),
            "1%!(EXTRA string=a)"
        );
        assert_eq!(
            f(
                "%+d %x %q",
                &[Val::Int(5), Val::Int(255), Val::Str("a\"b".into())]
            ),
            "+5 ff \"a\\\"b\""
        );
    }
}
