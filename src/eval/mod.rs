//! The safe evaluator of spec §2.1. It starts with nothing: every builtin, module and method
//! a config may use is one entry of a table (`builtins`, `strings`, `methods`, `modules`),
//! which is both the allow-list and the dispatch, and every step is counted and bounded
//! (`limits`), so a config file can describe values but never run code, hang or exhaust
//! memory.
//!
//! Files by concern, each importing only those below it: `fail`, `limits`,
//! `coerce` (leaves); `table` (the entry types); `format` (`%`), `ops` (operators);
//! `builtins`, `strings`, `methods`, `modules` (the tables); this file (statements,
//! names, attributes and calls). The host facts (`crate::host::Host`) come in as a value.

mod builtins;
mod coerce;
mod fail;
mod format;
mod limits;
mod methods;
pub(crate) mod modules;
mod ops;
mod strings;
mod table;
#[cfg(test)]
mod tests;

pub use limits::Limits;

use crate::diagnostic::{Diagnostic, Diagnostics, SourceFile, Span};
use crate::host::Host;
use crate::syntax::ast::{BinOp, BoolOp, Expr, ExprKind, Module, Stmt, StmtKind, Target, UnaryOp};
use crate::value::Value;
use builtins::BUILTINS;
use coerce::dict_set;
use fail::{Fail, R, err, err_hint, too_big};
use limits::{Size, check_value};
use methods::{DICT_METHODS, LIST_METHODS, MATCH_METHODS, match_groups};
use ops::{binop_values, compare, slice, subscript};
use std::collections::{HashMap, HashSet};
use strings::STR_METHODS;
use table::{Call, Func, ModuleDef, Obj, find, names};

/// Where a key was assigned in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site {
    /// The whole statement.
    pub stmt: Span,
    /// The value expression.
    pub value: Span,
    /// A plain `key = expr` at the top level of the file (not in an `if`, not one of several
    /// targets): the only kind an editor or the `xm` renderer may rewrite.
    pub simple: bool,
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub key: String,
    pub value: Value,
    /// Every assignment of the key, in file order.
    pub sites: Vec<Site>,
}

/// The result of evaluating one file: the options, in the order they were first assigned.
#[derive(Debug, Clone, Default)]
pub struct Evaluated {
    pub bindings: Vec<Binding>,
}

impl Evaluated {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.bindings
            .iter()
            .find(|b| b.key == key)
            .map(|b| &b.value)
    }
    pub fn binding(&self, key: &str) -> Option<&Binding> {
        self.bindings.iter().find(|b| b.key == key)
    }
}

pub struct Evaluator<'a> {
    host: &'a Host,
    limits: Limits,
    steps: u64,
    env: HashMap<String, Obj>,
    poisoned: HashSet<String>,
    order: Vec<String>,
    sites: HashMap<String, Vec<Site>>,
}

/// Evaluates a parsed file. Every problem is collected; the options that did evaluate are
/// returned alongside them.
pub fn evaluate(
    file: &SourceFile,
    module: &Module,
    host: &Host,
    limits: Limits,
) -> (Evaluated, Diagnostics) {
    let mut ev = Evaluator {
        host,
        limits,
        steps: 0,
        env: HashMap::new(),
        poisoned: HashSet::new(),
        order: Vec::new(),
        sites: HashMap::new(),
    };
    let mut diags = Diagnostics::default();
    ev.block(file, &module.stmts, true, &mut diags);
    let mut bindings = Vec::new();
    for key in std::mem::take(&mut ev.order) {
        if let Some(Obj::Val(value)) = ev.env.remove(&key) {
            let sites = ev.sites.remove(&key).unwrap_or_default();
            bindings.push(Binding { key, value, sites });
        }
    }
    (Evaluated { bindings }, diags)
}

impl Evaluator<'_> {
    fn block(
        &mut self,
        file: &SourceFile,
        stmts: &[Stmt],
        top: bool,
        diags: &mut Diagnostics,
    ) -> bool {
        for s in stmts {
            match self.stmt(file, s, top, diags) {
                Ok(()) => {}
                Err(Fail::Error(span, msg, hint)) => {
                    let d = Diagnostic::error(msg).at(file, span);
                    diags.push(match hint {
                        Some(h) => d.with_hint(h),
                        None => d,
                    });
                }
                Err(Fail::Silent) => {}
                Err(Fail::Budget(span)) => {
                    diags.push(
                        Diagnostic::error(format!(
                            "evaluation took more than {} steps",
                            self.limits.max_steps
                        ))
                        .at(file, span)
                        .with_hint("config values must be simple; remove the runaway expression"),
                    );
                    return false;
                }
            }
        }
        true
    }

    fn stmt(&mut self, file: &SourceFile, s: &Stmt, top: bool, diags: &mut Diagnostics) -> R<()> {
        self.tick(s.span)?;
        match &s.kind {
            StmtKind::Assign { targets, value } => {
                let v = match self.expr(value) {
                    Ok(v) => v,
                    Err(e) => {
                        for t in targets {
                            for n in t.names() {
                                self.poisoned.insert(n.id.clone());
                                self.env.remove(&n.id);
                            }
                        }
                        return Err(e);
                    }
                };
                let simple = top && targets.len() == 1 && matches!(targets[0], Target::Name(_));
                for t in targets {
                    self.assign(
                        t,
                        v.clone(),
                        Site {
                            stmt: s.span,
                            value: value.span,
                            simple,
                        },
                    )?;
                }
                Ok(())
            }
            StmtKind::AugAssign { target, op, value } => {
                let current = self.lookup(&target.id, target.span)?;
                let result = self
                    .expr(value)
                    .and_then(|rhs| self.binop(*op, current, rhs, s.span));
                match result {
                    Ok(v) => {
                        let site = Site {
                            stmt: s.span,
                            value: value.span,
                            simple: false,
                        };
                        self.bind(&target.id, v, site);
                        Ok(())
                    }
                    Err(e) => {
                        self.poisoned.insert(target.id.clone());
                        self.env.remove(&target.id);
                        Err(e)
                    }
                }
            }
            StmtKind::If { test, body, orelse } => {
                let t = self.expr(test)?;
                let cond = match t {
                    Obj::Val(v) => v.truthy(),
                    Obj::Match(_) => true,
                    _ => true,
                };
                let ok = self.block(file, if cond { body } else { orelse }, false, diags);
                if ok { Ok(()) } else { Err(Fail::Silent) }
            }
            StmtKind::Import { names } => {
                for (module, alias, _) in names {
                    match alias {
                        Some(a) => {
                            let m = modules::module(module).ok_or(Fail::Silent)?;
                            self.env.insert(a.clone(), Obj::Module(m));
                        }
                        None => {
                            // `import os.path` binds `os`, as Python does.
                            let first = module.split('.').next().unwrap_or(module);
                            let m = modules::module(first).ok_or(Fail::Silent)?;
                            self.env.insert(first.to_string(), Obj::Module(m));
                        }
                    }
                }
                Ok(())
            }
            StmtKind::ImportFrom { module, names } => {
                let m = modules::module(module).ok_or(Fail::Silent)?;
                for (name, alias, span) in names {
                    let obj = self.module_attr(m, name, *span)?;
                    self.env
                        .insert(alias.clone().unwrap_or_else(|| name.clone()), obj);
                }
                Ok(())
            }
            StmtKind::Pass | StmtKind::Doc => Ok(()),
        }
    }

    fn assign(&mut self, target: &Target, value: Obj, site: Site) -> R<()> {
        match target {
            Target::Name(n) => {
                self.bind(&n.id, value, site);
                Ok(())
            }
            Target::Tuple(targets, span) => {
                let items = match value {
                    Obj::Val(Value::List(v)) | Obj::Val(Value::Tuple(v)) => v,
                    // Counted first: a long string is not split into values to be refused.
                    Obj::Val(Value::Str(s)) if s.chars().count() == targets.len() => {
                        s.chars().map(|c| Value::Str(c.to_string())).collect()
                    }
                    Obj::Val(Value::Str(s)) => {
                        return err_hint(
                            *span,
                            format!(
                                "cannot unpack {} values into {} names",
                                s.chars().count(),
                                targets.len()
                            ),
                            "give as many names as the value has items",
                        );
                    }
                    _ => return err(*span, "cannot unpack this value into several names"),
                };
                if items.len() != targets.len() {
                    return err_hint(
                        *span,
                        format!(
                            "cannot unpack {} values into {} names",
                            items.len(),
                            targets.len()
                        ),
                        "give as many names as the value has items",
                    );
                }
                let site = Site {
                    simple: false,
                    ..site
                };
                for (t, v) in targets.iter().zip(items) {
                    self.assign(t, Obj::Val(v), site)?;
                }
                Ok(())
            }
        }
    }

    fn bind(&mut self, name: &str, value: Obj, site: Site) {
        self.poisoned.remove(name);
        if !self.env.contains_key(name) && !self.order.iter().any(|k| k == name) {
            self.order.push(name.to_string());
        }
        self.sites.entry(name.to_string()).or_default().push(site);
        self.env.insert(name.to_string(), value);
    }

    fn tick(&mut self, span: Span) -> R<()> {
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            Err(Fail::Budget(span))
        } else {
            Ok(())
        }
    }

    fn lookup(&self, name: &str, span: Span) -> R<Obj> {
        if let Some(o) = self.env.get(name) {
            return Ok(o.clone());
        }
        if self.poisoned.contains(name) {
            return Err(Fail::Silent);
        }
        if let Some(f) = find(BUILTINS, name) {
            return Ok(Obj::Func(None, f));
        }
        if modules::module(name).is_some() {
            return err_hint(
                span,
                format!("name `{name}` is not defined"),
                format!("add `import {name}` first"),
            );
        }
        let known: Vec<&str> = self
            .env
            .keys()
            .map(String::as_str)
            .chain(names(BUILTINS))
            .collect();
        match crate::subst::closest(name, known.iter().copied()) {
            Some(s) => err_hint(
                span,
                format!("name `{name}` is not defined"),
                format!("did you mean `{s}`?"),
            ),
            None => err_hint(
                span,
                format!("name `{name}` is not defined"),
                "assign it before use, or quote it if it is a string",
            ),
        }
    }

    fn value(&mut self, e: &Expr) -> R<Value> {
        match self.expr(e)? {
            Obj::Val(v) => Ok(v),
            Obj::Match(groups) => Ok(Value::Str(
                groups.first().cloned().flatten().unwrap_or_default(),
            )),
            Obj::Module(m) => err(e.span, format!("module `{}` is not a value", m.name)),
            _ => err_hint(e.span, "a function is not a value", "call it with `(...)`"),
        }
    }

    /// Bounds a value an expression produced and charges its size to the step budget.
    fn check_len(&mut self, span: Span, v: Value) -> R<Value> {
        let v = check_value(span, v, &self.limits)?;
        self.charge(span, &v)?;
        Ok(v)
    }

    /// Charges the work of building or copying `v`: one step per item and per KiB of text,
    /// so a file that copies a long value in every statement runs out of steps instead of
    /// running for minutes.
    fn charge(&mut self, span: Span, v: &Value) -> R<()> {
        let work = match v {
            Value::Str(s) => s.len() / 1024,
            Value::List(_) | Value::Tuple(_) | Value::Dict(_) => {
                let size = Size::of(v, &self.limits);
                size.items + size.text / 1024
            }
            _ => 0,
        };
        self.steps += work as u64;
        if self.steps > self.limits.max_steps {
            Err(Fail::Budget(span))
        } else {
            Ok(())
        }
    }

    fn expr(&mut self, e: &Expr) -> R<Obj> {
        self.tick(e.span)?;
        let span = e.span;
        let v = match &e.kind {
            ExprKind::None => Value::None,
            ExprKind::Bool(b) => Value::Bool(*b),
            ExprKind::Int(i) => Value::Int(*i),
            ExprKind::Float(f) => Value::Float(*f),
            ExprKind::Str(s) => Value::Str(s.clone()),
            ExprKind::Name(n) => {
                let o = self.lookup(n, span)?;
                if let Obj::Val(v) = &o {
                    self.charge(span, v)?;
                }
                return Ok(o);
            }
            ExprKind::List(items) => Value::List(self.values(items, span)?),
            ExprKind::Tuple(items) => Value::Tuple(self.values(items, span)?),
            ExprKind::Dict(pairs) => {
                let mut out: Vec<(Value, Value)> = Vec::new();
                let mut size = Size::default();
                for (k, v) in pairs {
                    let k = self.value(k)?;
                    let v = self.value(v)?;
                    size.push(&k, span, &self.limits)?;
                    size.push(&v, span, &self.limits)?;
                    dict_set(&mut out, k, v);
                }
                Value::Dict(out)
            }
            ExprKind::BinOp(l, op, r) => {
                let l = self.expr(l)?;
                let r = self.expr(r)?;
                return self.binop(*op, l, r, span);
            }
            ExprKind::Unary(op, inner) => {
                let v = self.value(inner)?;
                match (op, v) {
                    (UnaryOp::Not, v) => Value::Bool(!v.truthy()),
                    (UnaryOp::Neg, Value::Int(i)) => {
                        Value::Int(i.checked_neg().ok_or_else(|| too_big(span))?)
                    }
                    (UnaryOp::Neg, Value::Float(f)) => Value::Float(-f),
                    (UnaryOp::Neg, Value::Bool(b)) => Value::Int(-(b as i64)),
                    (UnaryOp::Pos, v @ (Value::Int(_) | Value::Float(_))) => v,
                    (UnaryOp::Invert, Value::Int(i)) => Value::Int(!i),
                    (_, v) => {
                        return err(
                            span,
                            format!("bad operand type for unary operator: `{}`", v.type_name()),
                        );
                    }
                }
            }
            ExprKind::BoolOp(op, values) => {
                let mut last = Value::None;
                for (i, x) in values.iter().enumerate() {
                    last = self.value(x)?;
                    let t = last.truthy();
                    let stop = match op {
                        BoolOp::And => !t,
                        BoolOp::Or => t,
                    };
                    if stop || i + 1 == values.len() {
                        break;
                    }
                }
                last
            }
            ExprKind::Compare(left, rest) => {
                let mut l = self.value(left)?;
                for (op, r) in rest {
                    let r = self.value(r)?;
                    if !compare(*op, &l, &r, span)? {
                        return Ok(Obj::Val(Value::Bool(false)));
                    }
                    l = r;
                }
                Value::Bool(true)
            }
            ExprKind::IfExp { test, body, orelse } => {
                let t = self.expr(test)?;
                let cond = match t {
                    Obj::Val(v) => v.truthy(),
                    _ => true,
                };
                return self.expr(if cond { body } else { orelse });
            }
            ExprKind::Call { func, args, kwargs } => {
                let f = self.expr(func)?;
                let argv = self.values(args, span)?;
                let mut kw = Vec::with_capacity(kwargs.len());
                let mut size = Size::default();
                for (k, v) in kwargs {
                    let v = self.value(v)?;
                    size.push(&v, span, &self.limits)?;
                    kw.push((k.clone(), v));
                }
                return self.call(f, argv, kw, span, func.span);
            }
            ExprKind::Attribute(base, attr) => {
                let b = self.expr(base)?;
                return self.attribute(b, attr, span);
            }
            ExprKind::Subscript(base, index) => {
                let b = self.expr(base)?;
                if let Obj::Match(groups) = &b {
                    let i = self.value(index)?;
                    return match i {
                        Value::Int(n) if n >= 0 && (n as usize) < groups.len() => Ok(Obj::Val(
                            groups[n as usize]
                                .clone()
                                .map(Value::Str)
                                .unwrap_or(Value::None),
                        )),
                        _ => err(index.span, "no such group"),
                    };
                }
                let b = match b {
                    Obj::Val(v) => v,
                    _ => return err(base.span, "this object cannot be indexed"),
                };
                if let ExprKind::Slice(lo, hi, st) = &index.kind {
                    let lo = lo.as_ref().map(|x| self.int_arg(x)).transpose()?;
                    let hi = hi.as_ref().map(|x| self.int_arg(x)).transpose()?;
                    let st = st.as_ref().map(|x| self.int_arg(x)).transpose()?;
                    slice(&b, lo, hi, st, span)?
                } else {
                    let i = self.value(index)?;
                    subscript(&b, &i, span)?
                }
            }
            ExprKind::Slice(..) => return err(span, "a slice is only allowed inside `[...]`"),
        };
        Ok(Obj::Val(self.check_len(span, v)?))
    }

    fn int_arg(&mut self, e: &Expr) -> R<i64> {
        match self.value(e)? {
            Value::Int(i) => Ok(i),
            Value::Bool(b) => Ok(b as i64),
            Value::None => Ok(i64::MIN),
            v => err(
                e.span,
                format!("expected an int, found `{}`", v.type_name()),
            ),
        }
    }

    /// The values of a list, tuple or argument list, bounded in all as they are built: a
    /// literal naming a long string many times fails before the copies exhaust memory.
    fn values(&mut self, items: &[Expr], span: Span) -> R<Vec<Value>> {
        let mut out = Vec::with_capacity(items.len());
        let mut size = Size::default();
        for x in items {
            let v = self.value(x)?;
            size.push(&v, span, &self.limits)?;
            out.push(v);
        }
        Ok(out)
    }

    fn binop(&mut self, op: BinOp, l: Obj, r: Obj, span: Span) -> R<Obj> {
        let (l, r) = match (l, r) {
            (Obj::Val(l), Obj::Val(r)) => (l, r),
            _ => return err(span, format!("unsupported operand for `{}`", op.symbol())),
        };
        let v = binop_values(op, l, r, span, &self.limits)?;
        Ok(Obj::Val(self.check_len(span, v)?))
    }

    fn module_attr(&self, m: &'static ModuleDef, attr: &str, span: Span) -> R<Obj> {
        if let Some(f) = find(m.functions, attr) {
            return Ok(Obj::Func(Some(m.name), f));
        }
        if let Some(c) = m.constants.iter().find(|c| c.name == attr) {
            return Ok((c.value)(self.host));
        }
        let allowed: Vec<&str> = names(m.functions)
            .into_iter()
            .chain(m.constants.iter().map(|c| c.name))
            .collect();
        err_hint(
            span,
            format!("`{}.{attr}` is not allowed in config files", m.name),
            format!("available from `{}`: {}", m.name, allowed.join(", ")),
        )
    }

    fn attribute(&self, base: Obj, attr: &str, span: Span) -> R<Obj> {
        let method =
            |table: &'static [Func], recv: Value| find(table, attr).map(|f| Obj::Method(recv, f));
        match base {
            Obj::Module(m) => self.module_attr(m, attr, span),
            Obj::Val(v @ Value::Str(_)) => method(STR_METHODS, v).ok_or(()).or_else(|_| {
                err_hint(
                    span,
                    format!("the string method `{attr}` is not allowed"),
                    format!("available: {}", names(STR_METHODS).join(", ")),
                )
            }),
            Obj::Val(v @ (Value::List(_) | Value::Tuple(_))) => {
                let type_name = v.type_name();
                method(LIST_METHODS, v).ok_or(()).or_else(|_| {
                    err_hint(
                        span,
                        format!("the method `{attr}` is not allowed on a {type_name}"),
                        "lists cannot be changed in place; build a new one with `+`",
                    )
                })
            }
            Obj::Val(v @ Value::Dict(_)) => method(DICT_METHODS, v).ok_or(()).or_else(|_| {
                err_hint(
                    span,
                    format!("the method `{attr}` is not allowed on a dict"),
                    format!("available: {}", names(DICT_METHODS).join(", ")),
                )
            }),
            Obj::Match(groups) => method(MATCH_METHODS, match_groups(&groups))
                .ok_or(())
                .or_else(|_| err(span, format!("the match method `{attr}` is not allowed"))),
            Obj::Val(v) => err(
                span,
                format!("a {} has no attribute `{attr}` here", v.type_name()),
            ),
            _ => err(span, format!("attribute `{attr}` is not allowed here")),
        }
    }

    fn call(
        &mut self,
        f: Obj,
        args: Vec<Value>,
        kwargs: Vec<(String, Value)>,
        span: Span,
        fspan: Span,
    ) -> R<Obj> {
        let (this, f, qualified) = match f {
            Obj::Func(module, f) => (
                Value::None,
                f,
                match module {
                    Some(m) => format!("{m}.{}", f.name),
                    None => f.name.to_string(),
                },
            ),
            Obj::Method(recv, f) => (recv, f, f.name.to_string()),
            Obj::Val(v) => return err(fspan, format!("a {} is not callable", v.type_name())),
            Obj::Module(m) => return err(fspan, format!("module `{}` is not callable", m.name)),
            Obj::Match(_) => return err(fspan, "a match is not callable"),
        };
        let call = Call {
            host: self.host,
            limits: &self.limits,
            this,
            args,
            kwargs,
            span,
        };
        match f.call(&qualified, call)? {
            Obj::Val(v) => Ok(Obj::Val(self.check_len(span, v)?)),
            other => Ok(other),
        }
    }
}
