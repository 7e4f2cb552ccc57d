//! `%` formatting as Python does it (`'%s-%03d' % ('web', 7)`, `'%(vm)s' % {...}`). Every
//! width and precision passes the string bound before anything is built, and the output is
//! written in one pass, so formatting takes time linear in its output.

use super::coerce::{int_like, num};
use super::fail::{R, err_hint};
use super::limits::{Limits, check_text, width};
use crate::diagnostic::Span;
use crate::value::Value;

pub(crate) const FORMAT_HINT: &str = "`%` formatting takes one value per conversion: `'%s-%d' % ('web', 1)`; write `%%` for a literal `%`";

/// Decimal places past which an `f64`'s exact decimal expansion has only zeros (its
/// smallest subnormal has 1,074): digits beyond are written as zeros, not computed.
const EXACT_DIGITS: usize = 1_100;

/// One conversion: `%(key)-#08.3f`.
struct Spec {
    key: Option<String>,
    flags: Flags,
    width: usize,
    prec: Option<usize>,
    conv: char,
}

#[derive(Default, Clone, Copy)]
struct Flags {
    left: bool,
    plus: bool,
    space: bool,
    zero: bool,
    alt: bool,
}

/// Reads a run of digits as a number, saturating (the bound check comes after), and the
/// digits as written, for the message.
fn number(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<(u64, String)> {
    let mut n: Option<(u64, String)> = None;
    while let Some(c) = chars.peek().copied().filter(char::is_ascii_digit) {
        chars.next();
        let (v, text) = n.get_or_insert((0, String::new()));
        *v = v
            .saturating_mul(10)
            .saturating_add(u64::from(c.to_digit(10).unwrap_or(0)));
        // A long run of digits is shown shortened; its value saturates anyway.
        if text.len() < 40 {
            text.push(c);
        }
    }
    n
}

pub(crate) fn percent(fmt: &str, args: &Value, span: Span, limits: &Limits) -> R<Value> {
    let positional: &[Value] = match args {
        Value::Tuple(t) => t,
        Value::Dict(_) => &[],
        other => std::slice::from_ref(other),
    };
    let mut next = 0;
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut key: Option<String> = None;
        if chars.peek() == Some(&'(') {
            chars.next();
            let mut k = String::new();
            for c in chars.by_ref() {
                if c == ')' {
                    break;
                }
                k.push(c);
            }
            key = Some(k);
        }
        let mut flags = Flags::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => flags.left = true,
                '+' => flags.plus = true,
                ' ' => flags.space = true,
                '0' => flags.zero = true,
                '#' => flags.alt = true,
                _ => break,
            }
            chars.next();
        }
        let w = match number(&mut chars) {
            Some((w, shown)) => width(span, "format width", w, &shown, limits)?,
            None => 0,
        };
        let mut prec = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let (p, shown) = number(&mut chars).unwrap_or((0, "0".into()));
            prec = Some(width(span, "format precision", p, &shown, limits)?);
        }
        let Some(conv) = chars.next() else {
            return err_hint(span, "incomplete format: `%` at the end", FORMAT_HINT);
        };
        if conv == '%' {
            out.push('%');
            continue;
        }
        let spec = Spec {
            key,
            flags,
            width: w,
            prec,
            conv,
        };
        let arg = match &spec.key {
            Some(k) => keyed(args, k, span)?,
            None => {
                let a = positional.get(next).ok_or(()).or_else(|_| {
                    err_hint(span, "not enough arguments for format string", FORMAT_HINT)
                })?;
                next += 1;
                a
            }
        };
        convert(&mut out, &spec, arg, span, limits)?;
    }
    let extra = match args {
        Value::Tuple(t) => next < t.len(),
        Value::Dict(_) => false,
        _ => next == 0,
    };
    if extra {
        return err_hint(
            span,
            "not all arguments converted during string formatting",
            FORMAT_HINT,
        );
    }
    Ok(Value::Str(out))
}

fn keyed<'a>(args: &'a Value, k: &str, span: Span) -> R<&'a Value> {
    match args {
        Value::Dict(d) => d
            .iter()
            .find(|(x, _)| x.as_str() == Some(k))
            .map(|(_, v)| v)
            .ok_or(())
            .or_else(|_| {
                err_hint(
                    span,
                    format!("format key `{k}` not found"),
                    format!(
                        "the dict has: {}",
                        d.iter()
                            .map(|(k, _)| k.repr())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            }),
        _ => err_hint(
            span,
            "format requires a dict",
            "`%(key)s` takes its values from a dict: `'%(vm)s' % {'vm': 'web1'}`",
        ),
    }
}

/// Writes one conversion to `out`: sign, prefix, padding and digits, checked against the
/// string bound before it is written.
fn convert(out: &mut String, spec: &Spec, arg: &Value, span: Span, limits: &Limits) -> R<()> {
    let conv = spec.conv;
    let number_required = |what: &str, convert: &str| {
        err_hint::<()>(
            span,
            format!(
                "%{conv} format: {what} is required, not {}",
                arg.type_name()
            ),
            format!("use `%s` for text, or convert with `{convert}(...)` first"),
        )
    };
    // Numbers are a sign, a prefix (`0x`) and digits; padding goes between them.
    let (negative, prefix, digits): (bool, &str, String) = match conv {
        's' | 'r' => {
            let t = if conv == 's' {
                arg.to_text()
            } else {
                arg.repr()
            };
            let t = match spec.prec {
                Some(p) => match t.char_indices().nth(p) {
                    Some((at, _)) => t[..at].to_string(),
                    None => t,
                },
                None => t,
            };
            (false, "", t)
        }
        'd' | 'i' | 'u' => match (int_like(arg), num(arg)) {
            (Some(i), _) => (
                i < 0,
                "",
                zero_extend(i.unsigned_abs().to_string(), spec.prec),
            ),
            (None, Some(f)) if !f.is_finite() => {
                let what = if f.is_nan() { "NaN" } else { "infinity" };
                return err_hint(
                    span,
                    format!("%{conv} format: cannot convert float {what} to integer"),
                    "use `%f` for floats that are not finite",
                );
            }
            // A float's integer part, exactly as Python prints it, however large.
            (None, Some(f)) => (
                f.trunc() < 0.0,
                "",
                zero_extend(format!("{:.0}", f.trunc().abs()), spec.prec),
            ),
            (None, None) => return number_required("a number", "int"),
        },
        'x' | 'X' | 'o' => match int_like(arg) {
            Some(i) => {
                let u = i.unsigned_abs();
                let (d, prefix) = match conv {
                    'x' => (format!("{u:x}"), "0x"),
                    'X' => (format!("{u:X}"), "0X"),
                    _ => (format!("{u:o}"), "0o"),
                };
                let prefix = if spec.flags.alt { prefix } else { "" };
                (i < 0, prefix, zero_extend(d, spec.prec))
            }
            None => return number_required("an integer", "int"),
        },
        'f' | 'F' | 'e' | 'E' | 'g' | 'G' => match num(arg) {
            Some(f) => {
                let p = spec.prec.unwrap_or(6);
                let upper = conv.is_ascii_uppercase();
                let a = f.abs();
                let d = if !a.is_finite() {
                    let t = if a.is_nan() { "nan" } else { "inf" };
                    if upper {
                        t.to_uppercase()
                    } else {
                        t.to_string()
                    }
                } else {
                    match conv {
                        'e' | 'E' => exponent(a, p, upper, spec.flags.alt),
                        'g' | 'G' => general(a, p, upper, spec.flags.alt),
                        _ => {
                            let mut d = fixed(a, p);
                            if spec.flags.alt && p == 0 {
                                d.push('.');
                            }
                            d
                        }
                    }
                };
                (f.is_sign_negative() && !f.is_nan(), "", d)
            }
            None => return number_required("a number", "float"),
        },
        other => {
            return err_hint(
                span,
                format!("unsupported format character `{other}`"),
                "supported: %s %r %d %i %u %x %X %o %f %F %e %E %g %G, and %% for a literal `%`",
            );
        }
    };
    let text_conv = conv == 's' || conv == 'r';
    let sign = if text_conv {
        ""
    } else if negative {
        "-"
    } else if spec.flags.plus {
        "+"
    } else if spec.flags.space {
        " "
    } else {
        ""
    };
    let body = sign.len() + prefix.len() + digits.chars().count();
    let pad = spec.width.saturating_sub(body);
    check_text(
        span,
        out.len() + sign.len() + prefix.len() + pad + digits.len(),
        limits,
    )?;
    if spec.flags.left {
        out.push_str(sign);
        out.push_str(prefix);
        out.push_str(&digits);
        out.extend(std::iter::repeat_n(' ', pad));
    } else if spec.flags.zero && !text_conv {
        out.push_str(sign);
        out.push_str(prefix);
        out.extend(std::iter::repeat_n('0', pad));
        out.push_str(&digits);
    } else {
        out.extend(std::iter::repeat_n(' ', pad));
        out.push_str(sign);
        out.push_str(prefix);
        out.push_str(&digits);
    }
    Ok(())
}

/// Integer digits with at least `prec` of them, as Python's precision on `%d`, `%x`, `%o`.
fn zero_extend(digits: String, prec: Option<usize>) -> String {
    match prec {
        Some(p) if p > digits.len() => {
            let mut s = String::with_capacity(p);
            s.extend(std::iter::repeat_n('0', p - digits.len()));
            s.push_str(&digits);
            s
        }
        _ => digits,
    }
}

/// `a` with `prec` decimals (`a` finite, not negative).
fn fixed(a: f64, prec: usize) -> String {
    let exact = prec.min(EXACT_DIGITS);
    let mut s = format!("{a:.exact$}");
    s.extend(std::iter::repeat_n('0', prec - exact));
    s
}

/// Python's `%e`: `prec` decimals in the mantissa, at least two exponent digits, always
/// signed (`1.234500e+03`).
fn exponent(a: f64, prec: usize, upper: bool, alt: bool) -> String {
    let exact = prec.min(EXACT_DIGITS);
    let s = format!("{a:.exact$e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut out = String::with_capacity(prec + 8);
    out.push_str(mant);
    out.extend(std::iter::repeat_n('0', prec - exact));
    if alt && prec == 0 {
        out.push('.');
    }
    out.push(if upper { 'E' } else { 'e' });
    out.push(if exp < 0 { '-' } else { '+' });
    out.push_str(&format!("{:02}", exp.unsigned_abs()));
    out
}

/// Python's `%g`: `prec` significant digits, the exponent form only when the exponent is
/// below -4 or at least `prec`, trailing zeros dropped (kept with `#`).
fn general(a: f64, prec: usize, upper: bool, alt: bool) -> String {
    let p = prec.max(1);
    // The exponent after rounding to `p` significant digits.
    let sci = format!("{:.*e}", (p - 1).min(EXACT_DIGITS), a);
    let exp: i64 = sci
        .split_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    let strip = |mut s: String| -> String {
        if !alt && s.contains('.') {
            let keep = s.trim_end_matches('0').trim_end_matches('.').len();
            s.truncate(keep);
        }
        s
    };
    if exp < -4 || exp >= p as i64 {
        let s = exponent(a, p - 1, upper, alt);
        let (mant, e) = s.split_at(s.find(['e', 'E']).unwrap_or(s.len()));
        let mut mant = strip(mant.to_string());
        if alt && !mant.contains('.') {
            mant.push('.');
        }
        format!("{mant}{e}")
    } else {
        let decimals = (p as i64 - 1 - exp).max(0) as usize;
        let mut s = strip(fixed(a, decimals));
        if alt && !s.contains('.') {
            s.push('.');
        }
        s
    }
}
