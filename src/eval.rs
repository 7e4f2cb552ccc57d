//! The safe evaluator of spec §2.1. It starts with nothing: every builtin, module and method
//! a config may use is granted here by name, and every step is counted and bounded, so a
//! config file can describe values but never run code, hang or exhaust memory.

use crate::diagnostic::{Diagnostic, Diagnostics, SourceFile, Span};
use crate::syntax::{
    BinOp, BoolOp, CmpOp, Expr, ExprKind, Module, Stmt, StmtKind, Target, UnaryOp,
};
use crate::value::Value;
use std::collections::{HashMap, HashSet};

/// What `os.uname()` answers: the machine the VM will run on (spec §2.4).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Host {
    pub sysname: String,
    pub nodename: String,
    pub release: String,
    pub version: String,
    pub machine: String,
}

impl Host {
    /// The local machine, with `arch` replacing the machine field when given.
    pub fn local(arch: Option<&str>) -> Host {
        let [sysname, nodename, release, version, machine] = crate::sys::uname();
        let mut host = Host {
            sysname,
            nodename,
            release,
            version,
            machine,
        };
        if let Some(a) = arch {
            host.machine = a.to_string();
        }
        host
    }

    fn tuple(&self) -> Vec<Value> {
        [
            &self.sysname,
            &self.nodename,
            &self.release,
            &self.version,
            &self.machine,
        ]
        .into_iter()
        .map(|s| Value::Str(s.clone()))
        .collect()
    }
}

/// Resource bounds of one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_steps: u64,
    pub max_str_len: usize,
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps: 1_000_000,
            max_str_len: 1 << 20,
            max_items: 100_000,
        }
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mod {
    Os,
    OsPath,
    Re,
    Sys,
    String,
}

impl Mod {
    fn from_name(name: &str) -> Option<Mod> {
        Some(match name {
            "os" => Mod::Os,
            "os.path" => Mod::OsPath,
            "re" => Mod::Re,
            "sys" => Mod::Sys,
            "string" => Mod::String,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            Mod::Os => "os",
            Mod::OsPath => "os.path",
            Mod::Re => "re",
            Mod::Sys => "sys",
            Mod::String => "string",
        }
    }
    /// The functions granted in each module.
    fn functions(self) -> &'static [&'static str] {
        match self {
            Mod::Os => &["uname"],
            Mod::OsPath => &[
                "join", "basename", "dirname", "exists", "splitext", "isabs", "normpath",
            ],
            Mod::Re => &["search", "match", "sub", "findall", "split", "escape"],
            Mod::Sys => &[],
            Mod::String => &[
                "upper", "lower", "strip", "split", "join", "replace", "atoi",
            ],
        }
    }
}

const BUILTINS: &[&str] = &[
    "str", "int", "float", "bool", "len", "min", "max", "range", "list", "tuple", "dict", "sorted",
    "abs", "repr",
];

const STR_METHODS: &[&str] = &[
    "upper",
    "lower",
    "strip",
    "lstrip",
    "rstrip",
    "split",
    "rsplit",
    "join",
    "replace",
    "startswith",
    "endswith",
    "find",
    "rfind",
    "count",
    "isdigit",
    "isalpha",
    "isalnum",
    "title",
    "capitalize",
    "splitlines",
    "zfill",
    "index",
];

/// Anything an expression can produce; only `Val` can become an option.
#[derive(Debug, Clone)]
enum Obj {
    Val(Value),
    Module(Mod),
    Builtin(&'static str),
    ModFn(Mod, &'static str),
    Method(Value, &'static str),
    Match(Vec<Option<String>>),
    MatchMethod(Vec<Option<String>>, &'static str),
}

enum Fail {
    /// A problem to report.
    Error(Span, String, Option<String>),
    /// Follows from an earlier reported problem; not reported again.
    Silent,
    /// The step budget ran out: abandon the file.
    Budget(Span),
}

type R<T> = Result<T, Fail>;

fn err<T>(span: Span, msg: impl Into<String>) -> R<T> {
    Err(Fail::Error(span, msg.into(), None))
}

fn err_hint<T>(span: Span, msg: impl Into<String>, hint: impl Into<String>) -> R<T> {
    Err(Fail::Error(span, msg.into(), Some(hint.into())))
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
                            let m = Mod::from_name(module).ok_or(Fail::Silent)?;
                            self.env.insert(a.clone(), Obj::Module(m));
                        }
                        None => {
                            // `import os.path` binds `os`, as Python does.
                            let first = module.split('.').next().unwrap_or(module);
                            let m = Mod::from_name(first).ok_or(Fail::Silent)?;
                            self.env.insert(first.to_string(), Obj::Module(m));
                        }
                    }
                }
                Ok(())
            }
            StmtKind::ImportFrom { module, names } => {
                let m = Mod::from_name(module).ok_or(Fail::Silent)?;
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
                    Obj::Val(Value::Str(s)) => {
                        s.chars().map(|c| Value::Str(c.to_string())).collect()
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
        if let Some(b) = BUILTINS.iter().find(|b| **b == name) {
            return Ok(Obj::Builtin(b));
        }
        if Mod::from_name(name).is_some() {
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
            .chain(BUILTINS.iter().copied())
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
            Obj::Module(m) => err(e.span, format!("module `{}` is not a value", m.name())),
            _ => err_hint(e.span, "a function is not a value", "call it with `(...)`"),
        }
    }

    fn check_len(&self, span: Span, v: Value) -> R<Value> {
        match &v {
            Value::Str(s) if s.len() > self.limits.max_str_len => err_hint(
                span,
                format!("string longer than {} bytes", self.limits.max_str_len),
                "config values are short; check the expression",
            ),
            Value::List(i) | Value::Tuple(i) if i.len() > self.limits.max_items => err_hint(
                span,
                format!("list longer than {} items", self.limits.max_items),
                "config values are short; check the expression",
            ),
            _ => Ok(v),
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
            ExprKind::Name(n) => return self.lookup(n, span),
            ExprKind::List(items) => Value::List(self.values(items)?),
            ExprKind::Tuple(items) => Value::Tuple(self.values(items)?),
            ExprKind::Dict(pairs) => {
                let mut out: Vec<(Value, Value)> = Vec::new();
                for (k, v) in pairs {
                    let k = self.value(k)?;
                    let v = self.value(v)?;
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
                let mut argv = Vec::with_capacity(args.len());
                for a in args {
                    argv.push(self.value(a)?);
                }
                let mut kw = Vec::with_capacity(kwargs.len());
                for (k, v) in kwargs {
                    kw.push((k.clone(), self.value(v)?));
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

    fn values(&mut self, items: &[Expr]) -> R<Vec<Value>> {
        items.iter().map(|x| self.value(x)).collect()
    }

    fn binop(&mut self, op: BinOp, l: Obj, r: Obj, span: Span) -> R<Obj> {
        let (l, r) = match (l, r) {
            (Obj::Val(l), Obj::Val(r)) => (l, r),
            _ => return err(span, format!("unsupported operand for `{}`", op.symbol())),
        };
        let v = binop_values(op, l, r, span, &self.limits)?;
        Ok(Obj::Val(self.check_len(span, v)?))
    }

    fn module_attr(&self, m: Mod, attr: &str, span: Span) -> R<Obj> {
        if let Some(f) = m.functions().iter().find(|f| **f == attr) {
            return Ok(Obj::ModFn(m, f));
        }
        let v = match (m, attr) {
            (Mod::Os, "path") => return Ok(Obj::Module(Mod::OsPath)),
            (Mod::Os, "sep") | (Mod::OsPath, "sep") => Value::Str("/".into()),
            (Mod::Os, "name") => Value::Str("posix".into()),
            (Mod::Os, "linesep") => Value::Str("\n".into()),
            (Mod::Sys, "platform") => {
                Value::Str(if self.host.sysname.eq_ignore_ascii_case("linux") {
                    "linux".into()
                } else {
                    self.host.sysname.to_lowercase()
                })
            }
            (Mod::Sys, "byteorder") => Value::Str("little".into()),
            (Mod::Sys, "maxsize") => Value::Int(i64::MAX),
            (Mod::String, "digits") => Value::Str("0123456789".into()),
            (Mod::String, "ascii_letters") | (Mod::String, "letters") => {
                Value::Str("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".into())
            }
            (Mod::String, "ascii_lowercase") | (Mod::String, "lowercase") => {
                Value::Str("abcdefghijklmnopqrstuvwxyz".into())
            }
            (Mod::String, "ascii_uppercase") | (Mod::String, "uppercase") => {
                Value::Str("ABCDEFGHIJKLMNOPQRSTUVWXYZ".into())
            }
            _ => {
                let mut allowed: Vec<&str> = m.functions().to_vec();
                if m == Mod::Os {
                    allowed.extend(["path", "sep", "name"]);
                }
                return err_hint(
                    span,
                    format!("`{}.{attr}` is not allowed in config files", m.name()),
                    if allowed.is_empty() {
                        format!("`{}` offers only constants here", m.name())
                    } else {
                        format!("available from `{}`: {}", m.name(), allowed.join(", "))
                    },
                );
            }
        };
        Ok(Obj::Val(v))
    }

    fn attribute(&self, base: Obj, attr: &str, span: Span) -> R<Obj> {
        match base {
            Obj::Module(m) => self.module_attr(m, attr, span),
            Obj::Val(Value::Str(s)) => match STR_METHODS.iter().find(|m| **m == attr) {
                Some(m) => Ok(Obj::Method(Value::Str(s), m)),
                None => err_hint(
                    span,
                    format!("the string method `{attr}` is not allowed"),
                    format!("available: {}", STR_METHODS.join(", ")),
                ),
            },
            Obj::Val(v @ (Value::List(_) | Value::Tuple(_))) => match attr {
                "index" => Ok(Obj::Method(v, "index")),
                "count" => Ok(Obj::Method(v, "count")),
                _ => err_hint(
                    span,
                    format!("the method `{attr}` is not allowed on a {}", v.type_name()),
                    "lists cannot be changed in place; build a new one with `+`",
                ),
            },
            Obj::Val(v @ Value::Dict(_)) => match attr {
                "get" => Ok(Obj::Method(v, "get")),
                "keys" => Ok(Obj::Method(v, "keys")),
                "values" => Ok(Obj::Method(v, "values")),
                "items" => Ok(Obj::Method(v, "items")),
                _ => err_hint(
                    span,
                    format!("the method `{attr}` is not allowed on a dict"),
                    "available: get, keys, values, items",
                ),
            },
            Obj::Match(groups) => match attr {
                "group" => Ok(Obj::MatchMethod(groups, "group")),
                "groups" => Ok(Obj::MatchMethod(groups, "groups")),
                _ => err(span, format!("the match method `{attr}` is not allowed")),
            },
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
        let no_kwargs = |kw: &[(String, Value)]| -> R<()> {
            if kw.is_empty() {
                Ok(())
            } else {
                err(span, "keyword arguments are not supported here")
            }
        };
        let v = match f {
            Obj::Builtin(name) => {
                if name != "dict" && name != "sorted" {
                    no_kwargs(&kwargs)?;
                }
                builtin(name, args, kwargs, span, &self.limits)?
            }
            Obj::ModFn(Mod::Os, "uname") => {
                no_kwargs(&kwargs)?;
                Value::Tuple(self.host.tuple())
            }
            Obj::ModFn(Mod::OsPath, name) => {
                no_kwargs(&kwargs)?;
                os_path(name, args, span)?
            }
            Obj::ModFn(Mod::Re, name) => {
                return re_call(name, args, kwargs, span);
            }
            Obj::ModFn(Mod::String, name) => {
                no_kwargs(&kwargs)?;
                let mut args = args.into_iter();
                let Some(first) = args.next() else {
                    return err(span, format!("`string.{name}` needs an argument"));
                };
                let rest: Vec<Value> = args.collect();
                if name == "join" {
                    let sep = rest.first().cloned().unwrap_or(Value::Str(" ".into()));
                    str_method(sep, "join", vec![first], span, &self.limits)?
                } else if name == "atoi" {
                    builtin(
                        "int",
                        std::iter::once(first).chain(rest).collect(),
                        vec![],
                        span,
                        &self.limits,
                    )?
                } else {
                    str_method(first, name, rest, span, &self.limits)?
                }
            }
            Obj::Method(recv, name) => {
                if name != "split" {
                    no_kwargs(&kwargs)?;
                }
                match recv {
                    Value::Str(_) => str_method(recv, name, args, span, &self.limits)?,
                    other => container_method(other, name, args, span)?,
                }
            }
            Obj::MatchMethod(groups, name) => match name {
                "groups" => Value::Tuple(
                    groups
                        .iter()
                        .skip(1)
                        .map(|g| g.clone().map(Value::Str).unwrap_or(Value::None))
                        .collect(),
                ),
                _ => {
                    let n = match args.first() {
                        None => 0,
                        Some(Value::Int(i)) if *i >= 0 => *i as usize,
                        _ => return err(span, "`group` takes a group number"),
                    };
                    match groups.get(n) {
                        Some(g) => g.clone().map(Value::Str).unwrap_or(Value::None),
                        None => return err(span, format!("no group {n}")),
                    }
                }
            },
            Obj::Val(v) => return err(fspan, format!("a {} is not callable", v.type_name())),
            Obj::Module(m) => return err(fspan, format!("module `{}` is not callable", m.name())),
            Obj::Match(_) => return err(fspan, "a match is not callable"),
            Obj::ModFn(m, name) => {
                return err(fspan, format!("`{}.{name}` is not available", m.name()));
            }
        };
        Ok(Obj::Val(self.check_len(span, v)?))
    }
}

const DIV_ZERO_HINT: &str = "the divisor is 0 here; check the values it is computed from";
const FORMAT_HINT: &str = "`%` formatting takes one value per conversion: `'%s-%d' % ('web', 1)`; write `%%` for a literal `%`";

fn too_big(span: Span) -> Fail {
    Fail::Error(
        span,
        "integer too large (more than 64 bits)".into(),
        Some("config values are sizes and counts; check the expression".into()),
    )
}

fn dict_set(d: &mut Vec<(Value, Value)>, k: Value, v: Value) {
    match d.iter_mut().find(|(x, _)| *x == k) {
        Some(slot) => slot.1 = v,
        None => d.push((k, v)),
    }
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Bool(b) => Some(*b as i64 as f64),
        _ => None,
    }
}

fn int_like(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Bool(b) => Some(*b as i64),
        _ => None,
    }
}

/// How many times a string or list may be repeated without passing `max` (`what` names the
/// unit of `max`, for the message).
fn repeat_len(span: Span, unit: usize, times: i64, max: usize, what: &str) -> R<usize> {
    let times = times.max(0) as usize;
    match unit.checked_mul(times) {
        Some(n) if n <= max => Ok(times),
        _ => err_hint(
            span,
            format!("the result would have more than {max} {what}"),
            "config values are short; check the expression",
        ),
    }
}

fn binop_values(op: BinOp, l: Value, r: Value, span: Span, limits: &Limits) -> R<Value> {
    use Value::*;
    if let (Some(a), Some(b)) = (int_like(&l), int_like(&r)) {
        let out = match op {
            BinOp::Add => a.checked_add(b),
            BinOp::Sub => a.checked_sub(b),
            BinOp::Mul => a.checked_mul(b),
            BinOp::Div => {
                if b == 0 {
                    return err_hint(span, "division by zero", DIV_ZERO_HINT);
                }
                return Ok(Float(a as f64 / b as f64));
            }
            BinOp::FloorDiv | BinOp::Mod => {
                if b == 0 {
                    return err_hint(span, "division by zero", DIV_ZERO_HINT);
                }
                let q = a.checked_div(b).ok_or_else(|| too_big(span))?;
                let m = a.checked_rem(b).ok_or_else(|| too_big(span))?;
                let (q, m) = if m != 0 && ((m < 0) != (b < 0)) {
                    (q - 1, m + b)
                } else {
                    (q, m)
                };
                Some(if op == BinOp::FloorDiv { q } else { m })
            }
            BinOp::Pow => {
                if b < 0 {
                    return Ok(Float((a as f64).powf(b as f64)));
                }
                u32::try_from(b).ok().and_then(|e| a.checked_pow(e))
            }
            BinOp::LShift => {
                if b < 0 {
                    return err(span, "negative shift count");
                }
                u32::try_from(b)
                    .ok()
                    .filter(|s| *s < 63)
                    .and_then(|s| a.checked_mul(1i64 << s))
            }
            BinOp::RShift => {
                if b < 0 {
                    return err(span, "negative shift count");
                }
                Some(if b >= 64 {
                    if a < 0 { -1 } else { 0 }
                } else {
                    a >> b
                })
            }
            BinOp::BitOr => Some(a | b),
            BinOp::BitXor => Some(a ^ b),
            BinOp::BitAnd => Some(a & b),
        };
        return out.map(Int).ok_or_else(|| too_big(span));
    }
    if let (Some(a), Some(b)) = (num(&l), num(&r)) {
        let out = match op {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div | BinOp::FloorDiv | BinOp::Mod if b == 0.0 => {
                return err_hint(span, "division by zero", DIV_ZERO_HINT);
            }
            BinOp::Div => a / b,
            BinOp::FloorDiv => (a / b).floor(),
            BinOp::Mod => a - b * (a / b).floor(),
            BinOp::Pow => a.powf(b),
            _ => {
                return err(
                    span,
                    format!("unsupported operand types for `{}`: float", op.symbol()),
                );
            }
        };
        if !out.is_finite() {
            return err(span, "float result out of range");
        }
        return Ok(Float(out));
    }
    match (op, l, r) {
        (BinOp::Add, Str(a), Str(b)) => {
            if a.len() + b.len() > limits.max_str_len {
                return err_hint(
                    span,
                    format!("string longer than {} bytes", limits.max_str_len),
                    "config values are short; check the expression",
                );
            }
            Ok(Str(a + &b))
        }
        (BinOp::Add, List(mut a), List(b)) => {
            a.extend(b);
            Ok(List(a))
        }
        (BinOp::Add, Tuple(mut a), Tuple(b)) => {
            a.extend(b);
            Ok(Tuple(a))
        }
        (BinOp::Mul, Str(s), n) | (BinOp::Mul, n, Str(s)) if int_like(&n).is_some() => {
            let times = repeat_len(
                span,
                s.len(),
                int_like(&n).unwrap_or(0),
                limits.max_str_len,
                "bytes",
            )?;
            Ok(Str(s.repeat(times)))
        }
        (BinOp::Mul, List(v), n) | (BinOp::Mul, n, List(v)) if int_like(&n).is_some() => {
            let times = repeat_len(
                span,
                v.len(),
                int_like(&n).unwrap_or(0),
                limits.max_items,
                "items",
            )?;
            Ok(List(
                v.iter().cloned().cycle().take(v.len() * times).collect(),
            ))
        }
        (BinOp::Mul, Tuple(v), n) | (BinOp::Mul, n, Tuple(v)) if int_like(&n).is_some() => {
            let times = repeat_len(
                span,
                v.len(),
                int_like(&n).unwrap_or(0),
                limits.max_items,
                "items",
            )?;
            Ok(Tuple(
                v.iter().cloned().cycle().take(v.len() * times).collect(),
            ))
        }
        (BinOp::Mod, Str(fmt), args) => percent_format(&fmt, &args, span, limits),
        (op, l, r) => err_hint(
            span,
            format!(
                "unsupported operand types for `{}`: `{}` and `{}`",
                op.symbol(),
                l.type_name(),
                r.type_name()
            ),
            "convert first: `str(x)` to join with text, `int(x)` for arithmetic",
        ),
    }
}

fn compare(op: CmpOp, l: &Value, r: &Value, span: Span) -> R<bool> {
    use std::cmp::Ordering;
    let eq = values_equal(l, r);
    Ok(match op {
        CmpOp::Eq | CmpOp::Is => eq,
        CmpOp::NotEq | CmpOp::IsNot => !eq,
        CmpOp::In | CmpOp::NotIn => {
            let found = match r {
                Value::Str(h) => match l {
                    Value::Str(n) => h.contains(n.as_str()),
                    _ => return err(span, "`in <string>` needs a string on the left"),
                },
                Value::List(v) | Value::Tuple(v) => v.iter().any(|x| values_equal(x, l)),
                Value::Dict(d) => d.iter().any(|(k, _)| values_equal(k, l)),
                other => {
                    return err(
                        span,
                        format!(
                            "`in` needs a string, list, tuple or dict, not `{}`",
                            other.type_name()
                        ),
                    );
                }
            };
            if op == CmpOp::In { found } else { !found }
        }
        _ => {
            let ord = order(l, r).ok_or(()).or_else(|_| {
                err_hint(
                    span,
                    format!("cannot order `{}` and `{}`", l.type_name(), r.type_name()),
                    "compare values of the same type, converting with `int(x)` or `str(x)` first",
                )
            })?;
            match op {
                CmpOp::Lt => ord == Ordering::Less,
                CmpOp::LtE => ord != Ordering::Greater,
                CmpOp::Gt => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            }
        }
    })
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x == y,
        _ => match (a, b) {
            (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(p, q))
            }
            _ => a == b,
        },
    }
}

fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    if let (Some(x), Some(y)) = (int_like(a), int_like(b)) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return x.partial_cmp(&y);
    }
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            for (p, q) in x.iter().zip(y) {
                if !values_equal(p, q) {
                    return order(p, q);
                }
            }
            Some(x.len().cmp(&y.len()))
        }
        _ => None,
    }
}

fn index_hint(len: usize) -> String {
    match len {
        0 => "it is empty".into(),
        n => format!(
            "valid indices are 0 to {} (or -{n} to -1 from the end)",
            n - 1
        ),
    }
}

fn norm_index(i: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let i = if i < 0 { i + len } else { i };
    (0..len).contains(&i).then_some(i as usize)
}

fn subscript(b: &Value, i: &Value, span: Span) -> R<Value> {
    match b {
        Value::List(v) | Value::Tuple(v) => {
            let idx = int_like(i)
                .ok_or(())
                .or_else(|_| err(span, "list indices must be integers"))?;
            norm_index(idx, v.len())
                .map(|n| v[n].clone())
                .ok_or(())
                .or_else(|_| {
                    err_hint(
                        span,
                        format!("index {idx} out of range (length {})", v.len()),
                        index_hint(v.len()),
                    )
                })
        }
        Value::Str(s) => {
            let idx = int_like(i)
                .ok_or(())
                .or_else(|_| err(span, "string indices must be integers"))?;
            let chars: Vec<char> = s.chars().collect();
            norm_index(idx, chars.len())
                .map(|n| Value::Str(chars[n].to_string()))
                .ok_or(())
                .or_else(|_| {
                    err_hint(
                        span,
                        format!("index {idx} out of range (length {})", chars.len()),
                        index_hint(chars.len()),
                    )
                })
        }
        Value::Dict(d) => d
            .iter()
            .find(|(k, _)| values_equal(k, i))
            .map(|(_, v)| v.clone())
            .ok_or(())
            .or_else(|_| {
                err_hint(
                    span,
                    format!("key {} not found", i.repr()),
                    "use `.get(key, default)`",
                )
            }),
        other => err(span, format!("a {} cannot be indexed", other.type_name())),
    }
}

fn slice(b: &Value, lo: Option<i64>, hi: Option<i64>, st: Option<i64>, span: Span) -> R<Value> {
    let st = match st {
        None | Some(i64::MIN) => 1,
        Some(0) => return err_hint(span, "slice step cannot be zero", "use 1, or -1 to reverse"),
        Some(s) => s,
    };
    let pick = |len: usize| -> Vec<usize> {
        let len_i = len as i64;
        let clamp = |x: Option<i64>, default: i64| -> i64 {
            match x {
                None | Some(i64::MIN) => default,
                Some(v) => {
                    let v = if v < 0 { v + len_i } else { v };
                    if st > 0 {
                        v.clamp(0, len_i)
                    } else {
                        v.clamp(-1, len_i - 1)
                    }
                }
            }
        };
        let (start, stop) = if st > 0 {
            (clamp(lo, 0), clamp(hi, len_i))
        } else {
            (clamp(lo, len_i - 1), clamp(hi, -1))
        };
        let mut out = Vec::new();
        let mut i = start;
        while (st > 0 && i < stop) || (st < 0 && i > stop) {
            out.push(i as usize);
            i += st;
        }
        out
    };
    Ok(match b {
        Value::List(v) => Value::List(pick(v.len()).into_iter().map(|i| v[i].clone()).collect()),
        Value::Tuple(v) => Value::Tuple(pick(v.len()).into_iter().map(|i| v[i].clone()).collect()),
        Value::Str(s) => {
            let chars: Vec<char> = s.chars().collect();
            Value::Str(pick(chars.len()).into_iter().map(|i| chars[i]).collect())
        }
        other => return err(span, format!("a {} cannot be sliced", other.type_name())),
    })
}

fn iter_items(v: Value, span: Span) -> R<Vec<Value>> {
    match v {
        Value::List(v) | Value::Tuple(v) => Ok(v),
        Value::Str(s) => Ok(s.chars().map(|c| Value::Str(c.to_string())).collect()),
        Value::Dict(d) => Ok(d.into_iter().map(|(k, _)| k).collect()),
        other => err(span, format!("a {} is not iterable", other.type_name())),
    }
}

fn builtin(
    name: &str,
    args: Vec<Value>,
    kwargs: Vec<(String, Value)>,
    span: Span,
    limits: &Limits,
) -> R<Value> {
    let n = args.len();
    let arity = |lo: usize, hi: usize| -> R<()> {
        if n < lo || n > hi {
            err(
                span,
                format!("`{name}` takes {lo}..{hi} arguments, got {n}"),
            )
        } else {
            Ok(())
        }
    };
    let mut args = args.into_iter();
    Ok(match name {
        "str" => {
            arity(0, 1)?;
            Value::Str(args.next().map(|v| v.to_text()).unwrap_or_default())
        }
        "repr" => {
            arity(1, 1)?;
            Value::Str(args.next().map(|v| v.repr()).unwrap_or_default())
        }
        "int" => {
            arity(0, 2)?;
            let base = match args.clone().nth(1) {
                Some(Value::Int(b)) if b == 0 || (2..=36).contains(&b) => Some(b as u32),
                Some(_) => return err(span, "`int` base must be 0 or 2..36"),
                None => None,
            };
            match args.next() {
                None => Value::Int(0),
                Some(Value::Int(i)) if base.is_none() => Value::Int(i),
                Some(Value::Bool(b)) if base.is_none() => Value::Int(b as i64),
                Some(Value::Float(f)) if base.is_none() => {
                    if f.is_finite() && f.abs() < 9.2e18 {
                        Value::Int(f.trunc() as i64)
                    } else {
                        return Err(too_big(span));
                    }
                }
                Some(Value::Str(s)) => {
                    let t = s.trim().replace('_', "");
                    let (neg, digits) = match t.strip_prefix('-') {
                        Some(d) => (true, d.to_string()),
                        None => (false, t.trim_start_matches('+').to_string()),
                    };
                    let (radix, digits) = match base {
                        Some(0) | None if digits.starts_with("0x") || digits.starts_with("0X") => {
                            (16, digits[2..].to_string())
                        }
                        Some(0) if digits.starts_with("0o") || digits.starts_with("0O") => {
                            (8, digits[2..].to_string())
                        }
                        Some(0) if digits.starts_with("0b") || digits.starts_with("0B") => {
                            (2, digits[2..].to_string())
                        }
                        Some(16) => (
                            16,
                            digits
                                .trim_start_matches("0x")
                                .trim_start_matches("0X")
                                .to_string(),
                        ),
                        Some(b) if b != 0 => (b, digits),
                        _ => (10, digits),
                    };
                    match i64::from_str_radix(&digits, radix) {
                        Ok(v) => Value::Int(if neg { -v } else { v }),
                        Err(_) => {
                            return err_hint(
                                span,
                                format!("invalid literal for int(): {}", Value::Str(s).repr()),
                                "the text must be a whole number such as '512' (give the base for hex: `int(x, 16)`)",
                            );
                        }
                    }
                }
                Some(v) => return err(span, format!("`int` cannot convert a {}", v.type_name())),
            }
        }
        "float" => {
            arity(0, 1)?;
            match args.next() {
                None => Value::Float(0.0),
                Some(v) => match num(&v) {
                    Some(f) => Value::Float(f),
                    None => match v.as_str().and_then(|s| s.trim().parse::<f64>().ok()) {
                        Some(f) => Value::Float(f),
                        None => {
                            return err(span, format!("could not convert {} to float", v.repr()));
                        }
                    },
                },
            }
        }
        "bool" => {
            arity(0, 1)?;
            Value::Bool(args.next().map(|v| v.truthy()).unwrap_or(false))
        }
        "abs" => {
            arity(1, 1)?;
            match args.next() {
                Some(Value::Int(i)) => Value::Int(i.checked_abs().ok_or_else(|| too_big(span))?),
                Some(Value::Float(f)) => Value::Float(f.abs()),
                Some(v) => return err(span, format!("bad operand for abs(): {}", v.type_name())),
                None => Value::None,
            }
        }
        "len" => {
            arity(1, 1)?;
            match args.next() {
                Some(Value::Str(s)) => Value::Int(s.chars().count() as i64),
                Some(Value::List(v)) | Some(Value::Tuple(v)) => Value::Int(v.len() as i64),
                Some(Value::Dict(d)) => Value::Int(d.len() as i64),
                Some(v) => return err(span, format!("a {} has no len()", v.type_name())),
                None => Value::None,
            }
        }
        "min" | "max" => {
            if n == 0 {
                return err(span, format!("`{name}` needs arguments"));
            }
            let items = if n == 1 {
                iter_items(args.next().unwrap_or(Value::None), span)?
            } else {
                args.collect()
            };
            let mut best: Option<Value> = None;
            for v in items {
                best = Some(match best {
                    None => v,
                    Some(b) => {
                        let o = order(&v, &b)
                            .ok_or(())
                            .or_else(|_| err(span, "cannot compare these values"))?;
                        let take = if name == "min" {
                            o == std::cmp::Ordering::Less
                        } else {
                            o == std::cmp::Ordering::Greater
                        };
                        if take { v } else { b }
                    }
                });
            }
            match best {
                Some(b) => b,
                None => return err(span, format!("`{name}` of an empty sequence")),
            }
        }
        "range" => {
            arity(1, 3)?;
            let ints: Vec<i64> = args
                .map(|v| int_like(&v).ok_or(()))
                .collect::<Result<_, _>>()
                .or_else(|_| err(span, "`range` takes integers"))?;
            let (start, stop, step) = match ints.as_slice() {
                [stop] => (0, *stop, 1),
                [a, b] => (*a, *b, 1),
                [a, b, c] => (*a, *b, *c),
                _ => (0, 0, 1),
            };
            if step == 0 {
                return err(span, "`range` step cannot be zero");
            }
            let count = if step > 0 {
                (stop.saturating_sub(start) + step - 1) / step
            } else {
                (start.saturating_sub(stop) - step - 1) / -step
            };
            if count > limits.max_items as i64 {
                return err_hint(
                    span,
                    format!("range longer than {} items", limits.max_items),
                    "config values are short; check the expression",
                );
            }
            Value::List(
                (0..count.max(0))
                    .map(|i| Value::Int(start + i * step))
                    .collect(),
            )
        }
        "list" => {
            arity(0, 1)?;
            Value::List(match args.next() {
                Some(v) => iter_items(v, span)?,
                None => vec![],
            })
        }
        "tuple" => {
            arity(0, 1)?;
            Value::Tuple(match args.next() {
                Some(v) => iter_items(v, span)?,
                None => vec![],
            })
        }
        "sorted" => {
            arity(1, 1)?;
            let mut items = iter_items(args.next().unwrap_or(Value::None), span)?;
            let reverse = kwargs.iter().any(|(k, v)| k == "reverse" && v.truthy());
            if kwargs.iter().any(|(k, _)| k != "reverse") {
                return err(span, "`sorted` takes only `reverse=`");
            }
            let mut bad = false;
            items.sort_by(|a, b| {
                order(a, b).unwrap_or_else(|| {
                    bad = true;
                    std::cmp::Ordering::Equal
                })
            });
            if bad {
                return err(span, "cannot sort values of different types");
            }
            if reverse {
                items.reverse();
            }
            Value::List(items)
        }
        "dict" => {
            arity(0, 1)?;
            let mut out = Vec::new();
            if let Some(v) = args.next() {
                match v {
                    Value::Dict(d) => out = d,
                    Value::List(items) | Value::Tuple(items) => {
                        for it in items {
                            match it {
                                Value::List(p) | Value::Tuple(p) if p.len() == 2 => {
                                    let mut p = p.into_iter();
                                    let (k, v) = (
                                        p.next().unwrap_or(Value::None),
                                        p.next().unwrap_or(Value::None),
                                    );
                                    dict_set(&mut out, k, v);
                                }
                                _ => return err(span, "`dict` needs pairs"),
                            }
                        }
                    }
                    other => {
                        return err(
                            span,
                            format!("`dict` cannot convert a {}", other.type_name()),
                        );
                    }
                }
            }
            for (k, v) in kwargs {
                dict_set(&mut out, Value::Str(k), v);
            }
            Value::Dict(out)
        }
        _ => return err(span, format!("`{name}` is not available")),
    })
}

fn str_arg(v: Option<&Value>, span: Span, what: &str) -> R<String> {
    match v {
        Some(Value::Str(s)) => Ok(s.clone()),
        Some(other) => err(
            span,
            format!("{what} must be a string, not {}", other.type_name()),
        ),
        None => err(span, format!("{what} is missing")),
    }
}

fn str_method(recv: Value, name: &str, args: Vec<Value>, span: Span, limits: &Limits) -> R<Value> {
    let s = match recv {
        Value::Str(s) => s,
        other => {
            return err(
                span,
                format!("`{name}` needs a string, not {}", other.type_name()),
            );
        }
    };
    let a0 = args.first();
    let opt_str = |v: Option<&Value>| -> R<Option<String>> {
        match v {
            None | Some(Value::None) => Ok(None),
            Some(Value::Str(x)) => Ok(Some(x.clone())),
            Some(o) => err(span, format!("expected a string, not {}", o.type_name())),
        }
    };
    let list =
        |v: Vec<&str>| Value::List(v.into_iter().map(|x| Value::Str(x.to_string())).collect());
    Ok(match name {
        "upper" => Value::Str(s.to_uppercase()),
        "lower" => Value::Str(s.to_lowercase()),
        "title" => Value::Str(
            s.split(' ')
                .map(|w| {
                    let mut c = w.chars();
                    match c.next() {
                        Some(f) => {
                            f.to_uppercase().collect::<String>() + &c.as_str().to_lowercase()
                        }
                        None => String::new(),
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "capitalize" => {
            let mut c = s.chars();
            Value::Str(match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + &c.as_str().to_lowercase(),
                None => String::new(),
            })
        }
        "strip" | "lstrip" | "rstrip" => {
            let chars = opt_str(a0)?;
            let pred = |c: char| match &chars {
                Some(set) => set.contains(c),
                None => c.is_whitespace(),
            };
            Value::Str(match name {
                "strip" => s.trim_matches(pred).to_string(),
                "lstrip" => s.trim_start_matches(pred).to_string(),
                _ => s.trim_end_matches(pred).to_string(),
            })
        }
        "split" | "rsplit" => {
            let sep = opt_str(a0)?;
            let max = match args.get(1) {
                Some(Value::Int(m)) if *m >= 0 => Some(*m as usize),
                _ => None,
            };
            match (sep, max) {
                (Some(sep), _) if sep.is_empty() => return err(span, "empty separator"),
                (Some(sep), Some(m)) if name == "split" => {
                    list(s.splitn(m + 1, sep.as_str()).collect())
                }
                (Some(sep), Some(m)) => {
                    let mut v: Vec<&str> = s.rsplitn(m + 1, sep.as_str()).collect();
                    v.reverse();
                    list(v)
                }
                (Some(sep), None) => list(s.split(sep.as_str()).collect()),
                (None, _) => list(s.split_whitespace().collect()),
            }
        }
        "splitlines" => list(s.lines().collect()),
        "join" => {
            let items = iter_items(a0.cloned().unwrap_or(Value::None), span)?;
            let mut parts = Vec::with_capacity(items.len());
            for it in items {
                match it {
                    Value::Str(x) => parts.push(x),
                    other => {
                        return err(
                            span,
                            format!("`join` needs strings, found {}", other.type_name()),
                        );
                    }
                }
            }
            let total: usize = parts.iter().map(String::len).sum::<usize>() + s.len() * parts.len();
            if total > limits.max_str_len {
                return err(
                    span,
                    format!("string longer than {} bytes", limits.max_str_len),
                );
            }
            Value::Str(parts.join(&s))
        }
        "replace" => {
            let old = str_arg(a0, span, "the old text")?;
            let new = str_arg(args.get(1), span, "the new text")?;
            let count = if old.is_empty() {
                s.chars().count() + 1
            } else {
                s.matches(old.as_str()).count()
            };
            if s.len() + count.saturating_mul(new.len()) > limits.max_str_len {
                return err(
                    span,
                    format!("string longer than {} bytes", limits.max_str_len),
                );
            }
            Value::Str(s.replace(old.as_str(), &new))
        }
        "startswith" | "endswith" => {
            let options = match a0 {
                Some(Value::Tuple(t)) => t
                    .iter()
                    .map(|v| str_arg(Some(v), span, "the prefix"))
                    .collect::<R<Vec<_>>>()?,
                other => vec![str_arg(other, span, "the prefix")?],
            };
            Value::Bool(options.iter().any(|p| {
                if name == "startswith" {
                    s.starts_with(p.as_str())
                } else {
                    s.ends_with(p.as_str())
                }
            }))
        }
        "find" | "rfind" | "index" => {
            let needle = str_arg(a0, span, "the text to find")?;
            let pos = if name == "rfind" {
                s.rfind(needle.as_str())
            } else {
                s.find(needle.as_str())
            };
            match pos {
                Some(p) => Value::Int(s[..p].chars().count() as i64),
                None if name == "index" => {
                    return err_hint(
                        span,
                        "substring not found",
                        "`find` answers -1 instead of failing",
                    );
                }
                None => Value::Int(-1),
            }
        }
        "count" => {
            let needle = str_arg(a0, span, "the text to count")?;
            Value::Int(if needle.is_empty() {
                s.chars().count() as i64 + 1
            } else {
                s.matches(needle.as_str()).count() as i64
            })
        }
        "isdigit" => Value::Bool(!s.is_empty() && s.chars().all(|c| c.is_ascii_digit())),
        "isalpha" => Value::Bool(!s.is_empty() && s.chars().all(char::is_alphabetic)),
        "isalnum" => Value::Bool(!s.is_empty() && s.chars().all(char::is_alphanumeric)),
        "zfill" => {
            let w = match a0 {
                Some(Value::Int(w)) if *w >= 0 && (*w as usize) <= limits.max_str_len => {
                    *w as usize
                }
                _ => return err(span, "`zfill` takes a width"),
            };
            let len = s.chars().count();
            if len >= w {
                Value::Str(s)
            } else {
                let (sign, rest) = match s.strip_prefix(['-', '+']) {
                    Some(r) => (&s[..1], r),
                    None => ("", s.as_str()),
                };
                Value::Str(format!("{sign}{}{rest}", "0".repeat(w - len)))
            }
        }
        _ => return err(span, format!("the string method `{name}` is not allowed")),
    })
}

fn container_method(recv: Value, name: &str, args: Vec<Value>, span: Span) -> R<Value> {
    match (recv, name) {
        (Value::List(v) | Value::Tuple(v), "index") => {
            let x = args.first().cloned().unwrap_or(Value::None);
            v.iter()
                .position(|y| values_equal(y, &x))
                .map(|p| Value::Int(p as i64))
                .ok_or(())
                .or_else(|_| err(span, "value not in list"))
        }
        (Value::List(v) | Value::Tuple(v), "count") => {
            let x = args.first().cloned().unwrap_or(Value::None);
            Ok(Value::Int(
                v.iter().filter(|y| values_equal(y, &x)).count() as i64
            ))
        }
        (Value::Dict(d), "get") => {
            let k = args.first().cloned().unwrap_or(Value::None);
            Ok(d.iter()
                .find(|(x, _)| values_equal(x, &k))
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| args.get(1).cloned().unwrap_or(Value::None)))
        }
        (Value::Dict(d), "keys") => Ok(Value::List(d.into_iter().map(|(k, _)| k).collect())),
        (Value::Dict(d), "values") => Ok(Value::List(d.into_iter().map(|(_, v)| v).collect())),
        (Value::Dict(d), "items") => Ok(Value::List(
            d.into_iter()
                .map(|(k, v)| Value::Tuple(vec![k, v]))
                .collect(),
        )),
        (v, name) => err(
            span,
            format!("a {} has no method `{name}` here", v.type_name()),
        ),
    }
}

fn os_path(name: &str, args: Vec<Value>, span: Span) -> R<Value> {
    let strs: Vec<String> = args
        .iter()
        .map(|a| str_arg(Some(a), span, "a path"))
        .collect::<R<_>>()?;
    let first = || {
        strs.first()
            .cloned()
            .ok_or(())
            .or_else(|_| err(span, format!("`os.path.{name}` needs a path")))
    };
    Ok(match name {
        "join" => {
            let mut out = String::new();
            for p in &strs {
                if p.starts_with('/') {
                    out = p.clone();
                } else if out.is_empty() || out.ends_with('/') {
                    out.push_str(p);
                } else {
                    out.push('/');
                    out.push_str(p);
                }
            }
            Value::Str(out)
        }
        "basename" => {
            let p = first()?;
            Value::Str(p.rsplit('/').next().unwrap_or("").to_string())
        }
        "dirname" => {
            let p = first()?;
            Value::Str(match p.rfind('/') {
                Some(0) => "/".into(),
                Some(i) => {
                    let d = p[..i].trim_end_matches('/');
                    if d.is_empty() {
                        "/".into()
                    } else {
                        d.to_string()
                    }
                }
                None => String::new(),
            })
        }
        "exists" => Value::Bool(std::path::Path::new(&first()?).exists()),
        "isabs" => Value::Bool(first()?.starts_with('/')),
        "splitext" => {
            let p = first()?;
            let base_start = p.rfind('/').map(|i| i + 1).unwrap_or(0);
            match p[base_start..].rfind('.') {
                Some(i) if i > 0 && !p[base_start..base_start + i].chars().all(|c| c == '.') => {
                    let at = base_start + i;
                    Value::Tuple(vec![
                        Value::Str(p[..at].to_string()),
                        Value::Str(p[at..].to_string()),
                    ])
                }
                _ => Value::Tuple(vec![Value::Str(p.clone()), Value::Str(String::new())]),
            }
        }
        "normpath" => {
            let p = first()?;
            let abs = p.starts_with('/');
            let mut parts: Vec<&str> = Vec::new();
            for c in p.split('/') {
                match c {
                    "" | "." => {}
                    ".." => {
                        if parts.last().is_some_and(|l| *l != "..") {
                            parts.pop();
                        } else if !abs {
                            parts.push("..");
                        }
                    }
                    c => parts.push(c),
                }
            }
            let j = parts.join("/");
            Value::Str(if abs {
                format!("/{j}")
            } else if j.is_empty() {
                ".".into()
            } else {
                j
            })
        }
        _ => return err(span, format!("`os.path.{name}` is not available")),
    })
}

fn compile_re(pattern: &str, span: Span) -> R<regex::Regex> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| Fail::Error(span, format!("bad regular expression: {e}"), Some("convirt supports the common subset of Python `re` (no look-around or back-references)".into())))
}

fn re_call(name: &str, args: Vec<Value>, kwargs: Vec<(String, Value)>, span: Span) -> R<Obj> {
    if !kwargs.is_empty() {
        return err(span, "keyword arguments are not supported here");
    }
    let pattern = str_arg(args.first(), span, "the pattern")?;
    if name == "escape" {
        return Ok(Obj::Val(Value::Str(regex::escape(&pattern))));
    }
    let re = compile_re(&pattern, span)?;
    let groups = |c: regex::Captures| -> Vec<Option<String>> {
        c.iter()
            .map(|m| m.map(|m| m.as_str().to_string()))
            .collect()
    };
    match name {
        "search" | "match" => {
            let text = str_arg(args.get(1), span, "the text")?;
            let caps = if name == "match" {
                re.captures(&text)
                    .filter(|c| c.get(0).is_some_and(|m| m.start() == 0))
            } else {
                re.captures(&text)
            };
            Ok(match caps {
                Some(c) => Obj::Match(groups(c)),
                None => Obj::Val(Value::None),
            })
        }
        "sub" => {
            let repl = str_arg(args.get(1), span, "the replacement")?;
            let text = str_arg(args.get(2), span, "the text")?;
            // Python writes groups as \1; the regex crate as ${1}.
            let mut r = String::new();
            let mut chars = repl.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' if chars.peek().is_some_and(char::is_ascii_digit) => {
                        let d = chars.next().unwrap_or('0');
                        r.push_str(&format!("${{{d}}}"));
                    }
                    '\\' if chars.peek() == Some(&'\\') => {
                        chars.next();
                        r.push('\\');
                    }
                    '$' => r.push_str("$$"),
                    c => r.push(c),
                }
            }
            Ok(Obj::Val(Value::Str(
                re.replace_all(&text, r.as_str()).into_owned(),
            )))
        }
        "findall" => {
            let text = str_arg(args.get(1), span, "the text")?;
            Ok(Obj::Val(Value::List(
                re.find_iter(&text)
                    .take(100_000)
                    .map(|m| Value::Str(m.as_str().to_string()))
                    .collect(),
            )))
        }
        "split" => {
            let text = str_arg(args.get(1), span, "the text")?;
            Ok(Obj::Val(Value::List(
                re.split(&text)
                    .take(100_000)
                    .map(|m| Value::Str(m.to_string()))
                    .collect(),
            )))
        }
        _ => err(span, format!("`re.{name}` is not available")),
    }
}

fn percent_format(fmt: &str, args: &Value, span: Span, limits: &Limits) -> R<Value> {
    let positional: Vec<Value> = match args {
        Value::Tuple(t) => t.clone(),
        Value::Dict(_) => vec![],
        other => vec![other.clone()],
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
        let mut flags = String::new();
        while let Some(&f) = chars.peek() {
            if "-+ 0#".contains(f) {
                flags.push(f);
                chars.next();
            } else {
                break;
            }
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek() {
            if d.is_ascii_digit() {
                width.push(d);
                chars.next();
            } else {
                break;
            }
        }
        let mut prec: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek() {
                if d.is_ascii_digit() {
                    p.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(conv) = chars.next() else {
            return err_hint(span, "incomplete format: `%` at the end", FORMAT_HINT);
        };
        if conv == '%' {
            out.push('%');
            continue;
        }
        let arg = match &key {
            Some(k) => match args {
                Value::Dict(d) => d
                    .iter()
                    .find(|(x, _)| x.as_str() == Some(k))
                    .map(|(_, v)| v.clone())
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
                    })?,
                _ => {
                    return err_hint(
                        span,
                        "format requires a dict",
                        "`%(key)s` takes its values from a dict: `'%(vm)s' % {'vm': 'web1'}`",
                    );
                }
            },
            None => {
                let a = positional.get(next).cloned().ok_or(()).or_else(|_| {
                    err_hint(span, "not enough arguments for format string", FORMAT_HINT)
                })?;
                next += 1;
                a
            }
        };
        let number_required = |what: &str, convert: &str| {
            err_hint::<Value>(
                span,
                format!(
                    "%{conv} format: {what} is required, not {}",
                    arg.type_name()
                ),
                format!("use `%s` for text, or convert with `{convert}(...)` first"),
            )
        };
        // Numbers are formatted as digits and a sign, so padding goes between them.
        let (negative, digits) = match conv {
            's' => (false, arg.to_text()),
            'r' => (false, arg.repr()),
            'd' | 'i' | 'u' => match num(&arg) {
                Some(f) => {
                    let i = f.trunc() as i64;
                    let mut d = i.unsigned_abs().to_string();
                    if let Some(p) = prec {
                        while d.len() < p.min(limits.max_str_len) {
                            d.insert(0, '0');
                        }
                    }
                    (i < 0, d)
                }
                None => return number_required("a number", "int").map(|_| Value::None),
            },
            'x' | 'X' | 'o' => match int_like(&arg) {
                Some(i) => {
                    let u = i.unsigned_abs();
                    let (d, prefix) = match conv {
                        'x' => (format!("{u:x}"), "0x"),
                        'X' => (format!("{u:X}"), "0X"),
                        _ => (format!("{u:o}"), "0o"),
                    };
                    let d = if flags.contains('#') {
                        format!("{prefix}{d}")
                    } else {
                        d
                    };
                    (i < 0, d)
                }
                None => return number_required("an integer", "int").map(|_| Value::None),
            },
            'f' | 'F' | 'e' | 'E' | 'g' | 'G' => match num(&arg) {
                Some(f) => {
                    let p = prec.unwrap_or(6).min(limits.max_str_len);
                    let a = f.abs();
                    let d = match conv {
                        'e' | 'E' => python_exp(a, p, conv == 'E'),
                        'g' | 'G' => python_general(a, p, conv == 'G'),
                        _ => format!("{a:.p$}"),
                    };
                    (f.is_sign_negative() && !f.is_nan(), d)
                }
                None => return number_required("a number", "float").map(|_| Value::None),
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
        let digits = match prec {
            Some(p) if text_conv => digits.chars().take(p).collect(),
            _ => digits,
        };
        let sign = if text_conv {
            ""
        } else if negative {
            "-"
        } else if flags.contains('+') {
            "+"
        } else if flags.contains(' ') {
            " "
        } else {
            ""
        };
        let w: usize = width.parse().unwrap_or(0).min(limits.max_str_len);
        let pad = w.saturating_sub(sign.len() + digits.chars().count());
        if flags.contains('-') {
            out.push_str(sign);
            out.push_str(&digits);
            out.push_str(&" ".repeat(pad));
        } else if flags.contains('0') && !text_conv {
            out.push_str(sign);
            out.push_str(&"0".repeat(pad));
            out.push_str(&digits);
        } else {
            out.push_str(&" ".repeat(pad));
            out.push_str(sign);
            out.push_str(&digits);
        }
        if out.len() > limits.max_str_len {
            return err(
                span,
                format!("string longer than {} bytes", limits.max_str_len),
            );
        }
    }
    if key_free_extra(args, next) {
        return err_hint(
            span,
            "not all arguments converted during string formatting",
            FORMAT_HINT,
        );
    }
    Ok(Value::Str(out))
}

/// Python's `%e`: at least two exponent digits, always signed (`1.234500e+03`).
fn python_exp(f: f64, prec: usize, upper: bool) -> String {
    let s = format!("{f:.prec$e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    let e = if upper { 'E' } else { 'e' };
    format!("{mant}{e}{sign}{:02}", exp.unsigned_abs())
}

/// Python's `%g`: `prec` significant digits, exponent form only for very small or large
/// numbers, trailing zeros dropped.
fn python_general(f: f64, prec: usize, upper: bool) -> String {
    if f == 0.0 || !f.is_finite() {
        return if f.is_finite() {
            "0".into()
        } else {
            format!("{f}")
        };
    }
    let p = prec.max(1);
    let sci = format!("{:.*e}", p - 1, f);
    let exp: i32 = sci
        .split_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    let strip = |s: String| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if exp < -4 || exp >= p as i32 {
        let (mant, _) = sci.split_once('e').unwrap_or((&sci, ""));
        let e = if upper { 'E' } else { 'e' };
        let sign = if exp < 0 { '-' } else { '+' };
        format!(
            "{}{e}{sign}{:02}",
            strip(mant.to_string()),
            exp.unsigned_abs()
        )
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        strip(format!("{f:.decimals$}"))
    }
}

fn key_free_extra(args: &Value, used: usize) -> bool {
    match args {
        Value::Tuple(t) => used < t.len(),
        Value::Dict(_) => false,
        _ => used == 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax;

    fn host() -> Host {
        Host {
            sysname: "Linux".into(),
            nodename: "xen1".into(),
            release: "6.1".into(),
            version: "#1".into(),
            machine: "x86_64".into(),
        }
    }

    fn run(src: &str) -> Result<Evaluated, String> {
        let f = SourceFile::new("vm_conf.template", src.to_string());
        let m = syntax::parse(&f).map_err(|d| d.render())?;
        let (ev, d) = evaluate(&f, &m, &host(), Limits::default());
        if d.has_errors() {
            Err(d.render())
        } else {
            Ok(ev)
        }
    }

    #[test]
    fn real_image_block_evaluates_for_the_target() {
        let ev = run("import os, re\narch = os.uname()[4]\nif re.search('64', arch):\n    arch_libdir = 'lib64'\nelse:\n    arch_libdir = 'lib'\ndevice_model = '/usr/' + arch_libdir + '/xen/bin/qemu-dm'\n").unwrap();
        assert_eq!(ev.get("arch_libdir"), Some(&Value::Str("lib64".into())));
        assert_eq!(
            ev.get("device_model"),
            Some(&Value::Str("/usr/lib64/xen/bin/qemu-dm".into()))
        );
        assert!(ev.get("os").is_none() && ev.get("re").is_none());
    }

    #[test]
    fn table_of_expressions() {
        let cases: &[(&str, Value)] = &[
            ("x = 7 // 2", Value::Int(3)),
            ("x = -7 // 2", Value::Int(-4)),
            ("x = -7 % 3", Value::Int(2)),
            ("x = 'a-%s-%03d' % ('b', 7)", Value::Str("a-b-007".into())),
            ("x = '%(n)s!' % {'n': 'hi'}", Value::Str("hi!".into())),
            // Each expected text is what Python 3 prints.
            (
                "x = '%e|%.2E' % (1234.5, 0.000123)",
                Value::Str("1.234500e+03|1.23E-04".into()),
            ),
            (
                "x = '%g|%g|%g|%g|%.3g|%G' % (1234.5, 0.5, 1e-5, 1234567.0, 3.14159, 2e20)",
                Value::Str("1234.5|0.5|1e-05|1.23457e+06|3.14|2E+20".into()),
            ),
            (
                "x = '%x|%o|%#x|%#o' % (-255, 8, 255, 8)",
                Value::Str("-ff|10|0xff|0o10".into()),
            ),
            (
                "x = '%05d|%+d|% d|%-4d|' % (-42, 5, 5, 7)",
                Value::Str("-0042|+5| 5|7   |".into()),
            ),
            (
                "x = '%.3d|%08.3f|%+.1f' % (5, -3.14159, 2.25)",
                Value::Str("005|-003.142|+2.2".into()),
            ),
            ("x = (1,)", Value::Tuple(vec![Value::Int(1)])),
            ("x = True and None", Value::None),
            ("x = 1 if 2 > 3 else 'no'", Value::Str("no".into())),
            ("x = 'abc'[::-1]", Value::Str("cba".into())),
            ("x = sorted([3, 1, 2])[-1]", Value::Int(3)),
            (
                "x = ' a b '.strip().split(' ')",
                Value::List(vec![Value::Str("a".into()), Value::Str("b".into())]),
            ),
            (
                "x = re.sub('(a)', '<\\\\1>', 'bab')",
                Value::Str("b<a>b".into()),
            ),
            (
                "x = os.path.join('/a', 'b', 'c.img')",
                Value::Str("/a/b/c.img".into()),
            ),
            ("x = 1 < 2 < 3", Value::Bool(true)),
            ("x = len(range(10))", Value::Int(10)),
            ("x = 10\nx += 5", Value::Int(15)),
            ("x = y = 'same'", Value::Str("same".into())),
        ];
        for (src, want) in cases {
            let src = format!("import os, re\n{src}\n");
            let ev = run(&src).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(ev.get("x"), Some(want), "{src}");
        }
    }

    #[test]
    fn bounds_end_in_errors_quickly() {
        for src in [
            "x = 9**9**9",
            "x = 'a' * 10**10",
            "x = [0] * 10**9",
            "x = range(10**12)",
            "x = 2 << 100",
            "x = 'ab' * 600000",
        ] {
            let start = std::time::Instant::now();
            let e = run(src).unwrap_err();
            assert!(e.contains("error:"), "{src}: {e}");
            assert!(start.elapsed().as_secs() < 2, "{src} took too long");
        }
    }

    #[test]
    fn common_evaluation_errors_say_what_to_do() {
        let cases: &[(&str, &str, &str)] = &[
            ("x = 1 // 0", "division by zero", "the divisor is 0"),
            ("x = 1.5 % 0", "division by zero", "the divisor is 0"),
            (
                "x = [1, 2][2]",
                "index 2 out of range (length 2)",
                "valid indices are 0 to 1",
            ),
            (
                "x = ''[0]",
                "index 0 out of range (length 0)",
                "it is empty",
            ),
            (
                "x = '%d MB' % 'ten'",
                "%d format: a number is required, not str",
                "use `%s`",
            ),
            (
                "x = '%s/%s' % ('a',)",
                "not enough arguments for format string",
                "one value per conversion",
            ),
            (
                "x = '%s' % ('a', 'b')",
                "not all arguments converted",
                "one value per conversion",
            ),
            (
                "x = '%(a)s' % {'b': 1}",
                "format key `a` not found",
                "the dict has: 'b'",
            ),
            (
                "x = '%y' % 1",
                "unsupported format character `y`",
                "supported: %s",
            ),
            (
                "x = 'a' + 1",
                "unsupported operand types for `+`: `str` and `int`",
                "str(x)",
            ),
            ("x = 'a' < 1", "cannot order `str` and `int`", "same type"),
            ("x = [1][::0]", "slice step cannot be zero", "use 1"),
            (
                "a, b = [1, 2, 3]",
                "cannot unpack 3 values into 2 names",
                "as many names",
            ),
            (
                "x = int('12abc')",
                "invalid literal for int(): '12abc'",
                "whole number",
            ),
            ("x = 'abc'.index('z')", "substring not found", "`find`"),
            (
                "x = [0] * 10**9",
                "the result would have more than 100000 items",
                "short",
            ),
            (
                "x = 'ab' * 10**9",
                "the result would have more than 1048576 bytes",
                "short",
            ),
        ];
        for (src, msg, hint) in cases {
            let f = SourceFile::new("t.conf", format!("{src}\n"));
            let m = syntax::parse(&f).unwrap_or_else(|d| panic!("{src}: {d}"));
            let (_, d) = evaluate(&f, &m, &host(), Limits::default());
            assert_eq!(d.0.len(), 1, "{src}: {d}");
            assert!(d.0[0].message.contains(msg), "{src}: {}", d.0[0].message);
            assert!(
                d.0[0].hints.iter().any(|h| h.contains(hint)),
                "{src}: {:?}",
                d.0[0].hints
            );
        }
    }

    #[test]
    fn errors_are_collected_and_not_cascaded() {
        let e = run("a = undefined_name\nb = a + 1\nc = os.system('x')\n").unwrap_err();
        assert_eq!(e.matches("error:").count(), 2, "{e}");
        assert!(e.contains("`undefined_name` is not defined"));
        assert!(e.contains("name `os` is not defined"));
    }

    #[test]
    fn disallowed_module_functions_are_named() {
        let e = run("import os\nc = os.system('rm -rf /')\n").unwrap_err();
        assert!(e.contains("`os.system` is not allowed"), "{e}");
    }
}
