//! Locating a key's assignments in the syntax tree, and telling the one plain statement
//! convirt rewrites from the shapes it leaves to the author.

use crate::diagnostic::{SourceFile, Span};
use crate::syntax::{Expr, ExprKind, Stmt, StmtKind, Target, UnaryOp};
use crate::value::Value;

/// Where and how a key is assigned, found in the syntax tree: every branch of every `if`
/// counts, not only the one taken on this host.
#[derive(Debug, Clone, Copy)]
pub(super) struct Assignment<'a> {
    pub(super) stmt: Span,
    /// Where the assigned name ends (the start of the statement for anything but a name).
    target_end: usize,
    pub(super) value: &'a Expr,
    pub(super) shape: Shape,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// `key = value` at the top level: the only kind convirt rewrites.
    Simple,
    /// Inside the `if` statement with this span (the outermost one).
    InIf(Span),
    SeveralTargets,
    Unpacking,
    Augmented(&'static str),
}

pub(super) fn assignments<'a>(
    stmts: &'a [Stmt],
    key: &str,
    in_if: Option<Span>,
    out: &mut Vec<Assignment<'a>>,
) {
    for s in stmts {
        match &s.kind {
            StmtKind::Assign { targets, value } => {
                let Some(t) = targets
                    .iter()
                    .find(|t| t.names().iter().any(|n| n.id == key))
                else {
                    continue;
                };
                let shape = match (in_if, t) {
                    (Some(span), _) => Shape::InIf(span),
                    (None, Target::Tuple(..)) => Shape::Unpacking,
                    (None, Target::Name(_)) if targets.len() > 1 => Shape::SeveralTargets,
                    (None, Target::Name(_)) => Shape::Simple,
                };
                let target_end = match t {
                    Target::Name(n) => n.span.end,
                    Target::Tuple(..) => s.span.start,
                };
                out.push(Assignment {
                    stmt: s.span,
                    target_end,
                    value,
                    shape,
                });
            }
            StmtKind::AugAssign { target, op, value } if target.id == key => {
                out.push(Assignment {
                    stmt: s.span,
                    target_end: target.span.end,
                    value,
                    shape: match in_if {
                        Some(span) => Shape::InIf(span),
                        None => Shape::Augmented(op.symbol()),
                    },
                });
            }
            StmtKind::If { body, orelse, .. } => {
                let outer = Some(in_if.unwrap_or(s.span));
                assignments(body, key, outer, out);
                assignments(orelse, key, outer, out);
            }
            _ => {}
        }
    }
}

impl Assignment<'_> {
    /// The text a new value replaces: the value expression with any grouping parentheses
    /// around it (`x = (1 +\n    2)`), as those belong to the old value.
    pub(super) fn value_region(&self, text: &str) -> Span {
        let v = self.value.span;
        let Some(eq) = text
            .get(self.target_end..v.start)
            .and_then(|s| s.find('='))
            .map(|i| self.target_end + i)
        else {
            return v;
        };
        let (Some(before), Some(after)) =
            (text.get(eq + 1..v.start), text.get(v.end..self.stmt.end))
        else {
            return v;
        };
        let only = |s: &str, p: char| s.chars().all(|c| c == p || c.is_whitespace() || c == '\\');
        let count = |s: &str, p: char| s.chars().filter(|&c| c == p).count();
        let opens = count(before, '(');
        if opens > 0 && only(before, '(') && only(after, ')') && count(after, ')') == opens {
            let start = eq + 1 + (before.len() - before.trim_start().len());
            Span::new(start, self.stmt.end)
        } else {
            v
        }
    }

    /// Why this assignment is not one convirt rewrites, for messages.
    pub(super) fn why(&self, src: &SourceFile) -> String {
        match self.shape {
            Shape::Simple => "by a plain assignment".into(),
            Shape::InIf(span) => {
                format!(
                    "inside the `if` block at line {}",
                    src.line_col(span.start).0
                )
            }
            Shape::SeveralTargets => "together with other names (`a = b = ...`)".into(),
            Shape::Unpacking => "by unpacking (`a, b = ...`)".into(),
            Shape::Augmented(op) => format!("by `{op}=`"),
        }
    }
}

pub(super) const BY_HAND: &str =
    "convirt rewrites only plain top-level `key = value` statements; change this one by hand";

/// The value of a literal expression, to tell an unchanged value from a changed one.
pub(super) fn literal_value(e: &Expr) -> Option<Value> {
    Some(match &e.kind {
        ExprKind::None => Value::None,
        ExprKind::Bool(b) => Value::Bool(*b),
        ExprKind::Int(i) => Value::Int(*i),
        ExprKind::Float(f) => Value::Float(*f),
        ExprKind::Str(s) => Value::Str(s.clone()),
        ExprKind::List(v) => Value::List(v.iter().map(literal_value).collect::<Option<_>>()?),
        ExprKind::Tuple(v) => Value::Tuple(v.iter().map(literal_value).collect::<Option<_>>()?),
        ExprKind::Dict(p) => Value::Dict(
            p.iter()
                .map(|(k, v)| Some((literal_value(k)?, literal_value(v)?)))
                .collect::<Option<_>>()?,
        ),
        ExprKind::Unary(UnaryOp::Neg, inner) => match literal_value(inner)? {
            Value::Int(i) => Value::Int(i.checked_neg()?),
            Value::Float(f) => Value::Float(-f),
            _ => return None,
        },
        _ => return None,
    })
}
