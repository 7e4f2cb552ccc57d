//! The conversion from `rustpython-parser`'s tree into convirt's AST, refusing what the
//! dialect forbids (spec §2.1) and collecting every violation. Importable modules come from
//! the evaluator's module table, so the two cannot disagree.

use super::ast::*;
use super::problem::Problem;
use crate::diagnostic::Span;
use crate::eval::modules::{importable, importable_names};
use rustpython_parser::ast::{self as py, Ranged};

fn span_of<T: Ranged>(node: &T) -> Span {
    let r = node.range();
    Span::new(usize::from(r.start()), usize::from(r.end()))
}

/// Builtins and module functions no config may call, named so the message can say so.
const FORBIDDEN_NAMES: &[&str] = &[
    "exec",
    "eval",
    "open",
    "compile",
    "__import__",
    "getattr",
    "setattr",
    "delattr",
    "globals",
    "locals",
    "vars",
    "input",
    "breakpoint",
    "exit",
    "quit",
    "print",
    "help",
    "memoryview",
    "type",
    "object",
    "super",
    "classmethod",
    "staticmethod",
    "property",
    "__builtins__",
    "file",
    "execfile",
    "reload",
    "raw_input",
];

pub(super) struct Converter {
    pub(crate) problems: Vec<Problem>,
    file_kind: String,
    depth: usize,
    /// Too deep nesting is reported once per statement, not at every node past the limit.
    deep_reported: bool,
}

impl Converter {
    pub(super) fn new(file_kind: String) -> Converter {
        Converter {
            problems: Vec::new(),
            file_kind,
            depth: 0,
            deep_reported: false,
        }
    }

    fn forbid(&mut self, span: Span, construct: &str, hint: &str) {
        self.problems.push(Problem {
            span,
            message: format!("{construct} is not allowed in {}", self.file_kind),
            hint: Some(hint.to_string()),
        });
    }

    pub(super) fn stmts(&mut self, stmts: &[py::Stmt]) -> Vec<Stmt> {
        stmts.iter().filter_map(|s| self.stmt(s)).collect()
    }

    fn stmt(&mut self, s: &py::Stmt) -> Option<Stmt> {
        let span = span_of(s);
        self.deep_reported = false;
        let no_code = "config files hold values, not code: write `key = value` assignments";
        let kind = match s {
            py::Stmt::Assign(a) => {
                let targets = a
                    .targets
                    .iter()
                    .filter_map(|t| self.target(t))
                    .collect::<Vec<_>>();
                let value = self.expr(&a.value)?;
                if targets.len() != a.targets.len() {
                    return None;
                }
                StmtKind::Assign { targets, value }
            }
            py::Stmt::AugAssign(a) => {
                let target = match a.target.as_ref() {
                    py::Expr::Name(n) => Name {
                        id: n.id.to_string(),
                        span: span_of(n),
                    },
                    other => {
                        self.forbid(
                            span_of(other),
                            "augmented assignment to anything but a name",
                            no_code,
                        );
                        return None;
                    }
                };
                let op = self.binop(a.op, span)?;
                let value = self.expr(&a.value)?;
                StmtKind::AugAssign { target, op, value }
            }
            py::Stmt::If(i) => {
                let test = self.expr(&i.test);
                let body = self.stmts(&i.body);
                let orelse = self.stmts(&i.orelse);
                StmtKind::If {
                    test: test?,
                    body,
                    orelse,
                }
            }
            py::Stmt::Import(i) => {
                let mut names = Vec::new();
                for a in &i.names {
                    let m = a.name.as_str();
                    if !importable(m) {
                        self.problems.push(Problem {
                            span: span_of(a),
                            message: format!(
                                "import of `{m}` is not allowed in {}",
                                self.file_kind
                            ),
                            hint: Some(format!(
                                "only these modules can be imported: {}",
                                importable_names().join(", ")
                            )),
                        });
                        continue;
                    }
                    names.push((
                        m.to_string(),
                        a.asname.as_ref().map(|n| n.to_string()),
                        span_of(a),
                    ));
                }
                StmtKind::Import { names }
            }
            py::Stmt::ImportFrom(i) => {
                let m = i.module.as_ref().map(|m| m.to_string()).unwrap_or_default();
                let level = i.level.map(|l| l.to_u32()).unwrap_or(0);
                if !importable(&m) || level > 0 {
                    let shown = format!("{}{m}", ".".repeat(level as usize));
                    self.problems.push(Problem {
                        span,
                        message: format!(
                            "import from `{shown}` is not allowed in {}",
                            self.file_kind
                        ),
                        hint: Some(format!(
                            "only these modules can be imported: {}",
                            importable_names().join(", ")
                        )),
                    });
                    return None;
                }
                let mut names = Vec::new();
                for a in &i.names {
                    if a.name.as_str() == "*" {
                        self.forbid(
                            span_of(a),
                            "`import *`",
                            "import the module and use `module.name`",
                        );
                        continue;
                    }
                    names.push((
                        a.name.to_string(),
                        a.asname.as_ref().map(|n| n.to_string()),
                        span_of(a),
                    ));
                }
                StmtKind::ImportFrom { module: m, names }
            }
            py::Stmt::Pass(_) => StmtKind::Pass,
            py::Stmt::Expr(e) => match e.value.as_ref() {
                py::Expr::Constant(c) if matches!(c.value, py::Constant::Str(_)) => StmtKind::Doc,
                py::Expr::Call(c) if matches!(c.func.as_ref(), py::Expr::Name(n) if n.id.as_str() == "print") =>
                {
                    self.forbid(
                        span,
                        "`print`",
                        "config files cannot print; delete the line",
                    );
                    return None;
                }
                other => {
                    // `exec('...')` should be refused as `exec`, not as a bare expression.
                    let before = self.problems.len();
                    let _ = self.expr(other);
                    if self.problems.len() == before {
                        self.forbid(
                            span,
                            "a bare expression statement",
                            "assign the value to a key: `key = value`",
                        );
                    }
                    return None;
                }
            },
            py::Stmt::FunctionDef(_) => {
                self.forbid(span, "`def`", no_code);
                return None;
            }
            py::Stmt::AsyncFunctionDef(_) => {
                self.forbid(span, "`async def`", no_code);
                return None;
            }
            py::Stmt::ClassDef(_) => {
                self.forbid(span, "`class`", no_code);
                return None;
            }
            py::Stmt::For(_) | py::Stmt::AsyncFor(_) => {
                self.forbid(span, "a `for` loop", "write the list out literally");
                return None;
            }
            py::Stmt::While(_) => {
                self.forbid(span, "a `while` loop", "write the values out literally");
                return None;
            }
            py::Stmt::With(_) | py::Stmt::AsyncWith(_) => {
                self.forbid(span, "`with`", no_code);
                return None;
            }
            py::Stmt::Try(_) | py::Stmt::TryStar(_) => {
                self.forbid(span, "`try`", no_code);
                return None;
            }
            py::Stmt::Raise(_) => {
                self.forbid(span, "`raise`", no_code);
                return None;
            }
            py::Stmt::Return(_) => {
                self.forbid(span, "`return`", no_code);
                return None;
            }
            py::Stmt::Delete(_) => {
                self.forbid(span, "`del`", "remove the assignment instead");
                return None;
            }
            py::Stmt::Assert(_) => {
                self.forbid(span, "`assert`", no_code);
                return None;
            }
            py::Stmt::Global(_) => {
                self.forbid(span, "`global`", no_code);
                return None;
            }
            py::Stmt::Nonlocal(_) => {
                self.forbid(span, "`nonlocal`", no_code);
                return None;
            }
            py::Stmt::Match(_) => {
                self.forbid(span, "`match`", "use `if`/`elif`/`else`");
                return None;
            }
            py::Stmt::AnnAssign(_) => {
                self.forbid(
                    span,
                    "an annotated assignment",
                    "drop the annotation: `key = value`",
                );
                return None;
            }
            _ => {
                self.forbid(span, "this statement", no_code);
                return None;
            }
        };
        Some(Stmt { kind, span })
    }

    fn target(&mut self, t: &py::Expr) -> Option<Target> {
        match t {
            py::Expr::Name(n) => {
                if n.id.as_str().starts_with("__") {
                    self.forbid(
                        span_of(n),
                        &format!("assigning to `{}`", n.id),
                        "choose a name without leading underscores",
                    );
                    return None;
                }
                Some(Target::Name(Name {
                    id: n.id.to_string(),
                    span: span_of(n),
                }))
            }
            py::Expr::Tuple(tu) => {
                let inner: Vec<_> = tu.elts.iter().filter_map(|e| self.target(e)).collect();
                (inner.len() == tu.elts.len()).then(|| Target::Tuple(inner, span_of(tu)))
            }
            py::Expr::List(l) => {
                let inner: Vec<_> = l.elts.iter().filter_map(|e| self.target(e)).collect();
                (inner.len() == l.elts.len()).then(|| Target::Tuple(inner, span_of(l)))
            }
            other => {
                self.forbid(
                    span_of(other),
                    "assignment to an attribute or item",
                    "assign to a plain name: `key = value`",
                );
                None
            }
        }
    }

    fn binop(&mut self, op: py::Operator, span: Span) -> Option<BinOp> {
        Some(match op {
            py::Operator::Add => BinOp::Add,
            py::Operator::Sub => BinOp::Sub,
            py::Operator::Mult => BinOp::Mul,
            py::Operator::Div => BinOp::Div,
            py::Operator::FloorDiv => BinOp::FloorDiv,
            py::Operator::Mod => BinOp::Mod,
            py::Operator::Pow => BinOp::Pow,
            py::Operator::LShift => BinOp::LShift,
            py::Operator::RShift => BinOp::RShift,
            py::Operator::BitOr => BinOp::BitOr,
            py::Operator::BitXor => BinOp::BitXor,
            py::Operator::BitAnd => BinOp::BitAnd,
            py::Operator::MatMult => {
                self.forbid(span, "the `@` operator", "use ordinary arithmetic");
                return None;
            }
        })
    }

    fn exprs(&mut self, es: &[py::Expr]) -> Option<Vec<Expr>> {
        let out: Vec<Expr> = es.iter().filter_map(|e| self.expr(e)).collect();
        (out.len() == es.len()).then_some(out)
    }

    fn boxed(&mut self, e: &py::Expr) -> Option<Box<Expr>> {
        self.expr(e).map(Box::new)
    }

    fn expr(&mut self, e: &py::Expr) -> Option<Expr> {
        self.depth += 1;
        let result = if self.depth > MAX_DEPTH {
            if !self.deep_reported {
                self.deep_reported = true;
                self.problems.push(Problem {
                    span: span_of(e),
                    message: format!("expression nested more than {MAX_DEPTH} deep"),
                    hint: Some("split the expression; config values need only a few levels".into()),
                });
            }
            None
        } else {
            self.expr_inner(e)
        };
        self.depth -= 1;
        result
    }

    fn expr_inner(&mut self, e: &py::Expr) -> Option<Expr> {
        let span = span_of(e);
        let kind = match e {
            py::Expr::Constant(c) => match &c.value {
                py::Constant::None => ExprKind::None,
                py::Constant::Bool(b) => ExprKind::Bool(*b),
                py::Constant::Str(s) => ExprKind::Str(s.clone()),
                py::Constant::Int(i) => match i64::try_from(i) {
                    Ok(v) => ExprKind::Int(v),
                    Err(_) => {
                        self.problems.push(Problem {
                            span,
                            message: "integer literal too large (more than 64 bits)".into(),
                            hint: Some(
                                "config values are sizes and counts; use a smaller number".into(),
                            ),
                        });
                        return None;
                    }
                },
                py::Constant::Float(f) => ExprKind::Float(*f),
                py::Constant::Bytes(_) => {
                    self.forbid(
                        span,
                        "a bytes literal",
                        "use a plain string: drop the `b` prefix",
                    );
                    return None;
                }
                py::Constant::Complex { .. } => {
                    self.forbid(span, "a complex number", "use an int or a float");
                    return None;
                }
                py::Constant::Ellipsis => {
                    self.forbid(span, "`...`", "write a value");
                    return None;
                }
                py::Constant::Tuple(items) => {
                    let _ = items;
                    self.forbid(span, "a constant tuple", "write the tuple out");
                    return None;
                }
            },
            py::Expr::Name(n) => {
                let id = n.id.as_str();
                if FORBIDDEN_NAMES.contains(&id) || id.starts_with("__") {
                    self.forbid(span, &format!("`{id}`"), "config files cannot run code; only a few builtins such as `str`, `int`, `len` are available");
                    return None;
                }
                ExprKind::Name(id.to_string())
            }
            py::Expr::List(l) => ExprKind::List(self.exprs(&l.elts)?),
            py::Expr::Tuple(t) => ExprKind::Tuple(self.exprs(&t.elts)?),
            py::Expr::Dict(d) => {
                let mut pairs = Vec::new();
                let mut ok = true;
                for (k, v) in d.keys.iter().zip(&d.values) {
                    let Some(k) = k else {
                        self.forbid(span_of(v), "`**` unpacking", "write the dict out");
                        ok = false;
                        continue;
                    };
                    match (self.expr(k), self.expr(v)) {
                        (Some(k), Some(v)) => pairs.push((k, v)),
                        _ => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                ExprKind::Dict(pairs)
            }
            py::Expr::BinOp(b) => {
                let l = self.boxed(&b.left);
                let r = self.boxed(&b.right);
                let op = self.binop(b.op, span)?;
                ExprKind::BinOp(l?, op, r?)
            }
            py::Expr::UnaryOp(u) => {
                let op = match u.op {
                    py::UnaryOp::Not => UnaryOp::Not,
                    py::UnaryOp::USub => UnaryOp::Neg,
                    py::UnaryOp::UAdd => UnaryOp::Pos,
                    py::UnaryOp::Invert => UnaryOp::Invert,
                };
                ExprKind::Unary(op, self.boxed(&u.operand)?)
            }
            py::Expr::BoolOp(b) => {
                let op = match b.op {
                    py::BoolOp::And => BoolOp::And,
                    py::BoolOp::Or => BoolOp::Or,
                };
                ExprKind::BoolOp(op, self.exprs(&b.values)?)
            }
            py::Expr::Compare(c) => {
                let left = self.boxed(&c.left);
                let rest = self.exprs(&c.comparators)?;
                let ops = c.ops.iter().map(|op| match op {
                    py::CmpOp::Eq => CmpOp::Eq,
                    py::CmpOp::NotEq => CmpOp::NotEq,
                    py::CmpOp::Lt => CmpOp::Lt,
                    py::CmpOp::LtE => CmpOp::LtE,
                    py::CmpOp::Gt => CmpOp::Gt,
                    py::CmpOp::GtE => CmpOp::GtE,
                    py::CmpOp::Is => CmpOp::Is,
                    py::CmpOp::IsNot => CmpOp::IsNot,
                    py::CmpOp::In => CmpOp::In,
                    py::CmpOp::NotIn => CmpOp::NotIn,
                });
                ExprKind::Compare(left?, ops.zip(rest).collect())
            }
            py::Expr::IfExp(i) => {
                let test = self.boxed(&i.test);
                let body = self.boxed(&i.body);
                let orelse = self.boxed(&i.orelse);
                ExprKind::IfExp {
                    test: test?,
                    body: body?,
                    orelse: orelse?,
                }
            }
            py::Expr::Call(c) => {
                let func = self.boxed(&c.func);
                let args = self.exprs(&c.args);
                let mut kwargs = Vec::new();
                let mut ok = true;
                for k in &c.keywords {
                    match (&k.arg, self.expr(&k.value)) {
                        (Some(name), Some(v)) => kwargs.push((name.to_string(), v)),
                        (None, _) => {
                            self.forbid(span_of(k), "`**` unpacking", "pass the arguments by name");
                            ok = false;
                        }
                        _ => ok = false,
                    }
                }
                for a in &c.args {
                    if matches!(a, py::Expr::Starred(_)) {
                        ok = false;
                    }
                }
                if !ok {
                    return None;
                }
                ExprKind::Call {
                    func: func?,
                    args: args?,
                    kwargs,
                }
            }
            py::Expr::Attribute(a) => {
                // The leftmost problem is the one to report: `''.__class__.__mro__` names
                // `__class__`.
                let value = self.boxed(&a.value)?;
                if a.attr.as_str().starts_with('_') {
                    self.forbid(span, &format!("the attribute `{}`", a.attr), "only public functions of os, os.path, re, sys, string and str methods are available");
                    return None;
                }
                ExprKind::Attribute(value, a.attr.to_string())
            }
            py::Expr::Subscript(s) => {
                let v = self.boxed(&s.value);
                let i = self.boxed(&s.slice);
                ExprKind::Subscript(v?, i?)
            }
            py::Expr::Slice(s) => {
                let lower = s.lower.as_ref().map(|e| self.boxed(e));
                let upper = s.upper.as_ref().map(|e| self.boxed(e));
                let step = s.step.as_ref().map(|e| self.boxed(e));
                let unwrap = |o: Option<Option<Box<Expr>>>| -> Result<Option<Box<Expr>>, ()> {
                    match o {
                        None => Ok(None),
                        Some(Some(e)) => Ok(Some(e)),
                        Some(None) => Err(()),
                    }
                };
                match (unwrap(lower), unwrap(upper), unwrap(step)) {
                    (Ok(l), Ok(u), Ok(st)) => ExprKind::Slice(l, u, st),
                    _ => return None,
                }
            }
            py::Expr::Lambda(_) => {
                self.forbid(span, "`lambda`", "config files hold values, not functions");
                return None;
            }
            py::Expr::ListComp(_)
            | py::Expr::SetComp(_)
            | py::Expr::DictComp(_)
            | py::Expr::GeneratorExp(_) => {
                self.forbid(span, "a comprehension", "write the list out literally");
                return None;
            }
            py::Expr::Set(_) => {
                self.forbid(span, "a set literal", "use a list: `[...]`");
                return None;
            }
            py::Expr::NamedExpr(_) => {
                self.forbid(span, "`:=`", "assign on its own line: `key = value`");
                return None;
            }
            py::Expr::JoinedStr(_) | py::Expr::FormattedValue(_) => {
                self.forbid(
                    span,
                    "an f-string",
                    "use `%` formatting or `+`, or `$VARIABLE` substitution",
                );
                return None;
            }
            py::Expr::Starred(_) => {
                self.forbid(span, "`*` unpacking", "write the items out");
                return None;
            }
            py::Expr::Await(_) | py::Expr::Yield(_) | py::Expr::YieldFrom(_) => {
                let construct = match e {
                    py::Expr::Await(_) => "`await`",
                    py::Expr::Yield(_) => "`yield`",
                    _ => "`yield from`",
                };
                self.forbid(
                    span,
                    construct,
                    "config files hold values, not code: write `key = value` assignments",
                );
                return None;
            }
        };
        Some(Expr { kind, span })
    }
}
