//! The sandbox's one table type. A granted builtin, method or module function is one
//! [`Func`] entry: its name, arity, keyword arguments and the code that runs it, so the
//! allow-list and the dispatch cannot disagree (the way starlark-rust registers globals).
//! A module is a [`ModuleDef`]: its functions and its constants.

use super::fail::{R, err, err_hint};
use super::limits::Limits;
use crate::diagnostic::Span;
use crate::host::Host;
use crate::value::Value;

/// Anything an expression can produce; only `Val` can become an option.
#[derive(Debug, Clone)]
pub(crate) enum Obj {
    Val(Value),
    Module(&'static ModuleDef),
    /// A builtin or a module function, with the module it came from (for messages).
    Func(Option<&'static str>, &'static Func),
    /// A method bound to its receiver (a `re` match's groups are a tuple of str or None).
    Method(Value, &'static Func),
    /// A `re` match: its groups, group 0 first.
    Match(Vec<Option<String>>),
}

/// One granted function.
pub(crate) struct Func {
    pub(crate) name: &'static str,
    /// Fewest and most positional arguments (`usize::MAX`: any number).
    pub(crate) min: usize,
    pub(crate) max: usize,
    /// Keyword arguments accepted; `["*"]` accepts any name (`dict(a=1)`).
    pub(crate) kwargs: &'static [&'static str],
    pub(crate) run: fn(Call<'_>) -> R<Obj>,
}

impl std::fmt::Debug for Func {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Func({})", self.name)
    }
}

/// A named constant of a module (`os.sep`, `os.path`, `sys.platform`).
pub(crate) struct Const {
    pub(crate) name: &'static str,
    pub(crate) value: fn(&Host) -> Obj,
}

/// A module a config may import.
pub(crate) struct ModuleDef {
    pub(crate) name: &'static str,
    pub(crate) functions: &'static [Func],
    pub(crate) constants: &'static [Const],
}

impl std::fmt::Debug for ModuleDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModuleDef({})", self.name)
    }
}

/// One call of a granted function, its arguments checked against the entry.
pub(crate) struct Call<'a> {
    pub(crate) host: &'a Host,
    pub(crate) limits: &'a Limits,
    /// The receiver of a method; `None` for a function.
    pub(crate) this: Value,
    pub(crate) args: Vec<Value>,
    pub(crate) kwargs: Vec<(String, Value)>,
    pub(crate) span: Span,
}

impl Call<'_> {
    pub(crate) fn arg(&self, i: usize) -> Option<&Value> {
        self.args.get(i)
    }

    /// A parameter given by position or by name.
    pub(crate) fn param(&self, i: usize, name: &str) -> Option<&Value> {
        self.args
            .get(i)
            .or_else(|| self.kwargs.iter().find(|(k, _)| k == name).map(|(_, v)| v))
    }

    /// The receiver of a string method.
    pub(crate) fn this_str(&self) -> &str {
        self.this.as_str().unwrap_or_default()
    }
}

pub(crate) fn val(v: Value) -> R<Obj> {
    Ok(Obj::Val(v))
}

impl Func {
    /// Checks the arguments against the entry, then runs it.
    pub(crate) fn call(&'static self, qualified: &str, c: Call<'_>) -> R<Obj> {
        let n = c.args.len();
        if n < self.min || n > self.max {
            let takes = if self.max == usize::MAX {
                format!("at least {}", self.min)
            } else if self.min == self.max {
                self.min.to_string()
            } else {
                format!("{}..{}", self.min, self.max)
            };
            return err(
                c.span,
                format!("`{qualified}` takes {takes} arguments, got {n}"),
            );
        }
        if self.kwargs != ["*"] {
            if let Some((k, _)) = c
                .kwargs
                .iter()
                .find(|(k, _)| !self.kwargs.contains(&k.as_str()))
            {
                return if self.kwargs.is_empty() {
                    err(c.span, "keyword arguments are not supported here")
                } else {
                    err_hint(
                        c.span,
                        format!(
                            "`{qualified}` takes only {}",
                            self.kwargs
                                .iter()
                                .map(|k| format!("`{k}=`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        format!("`{k}=` is not one of them"),
                    )
                };
            }
        }
        (self.run)(c)
    }
}

/// The entry of `name` in a table.
pub(crate) fn find(table: &'static [Func], name: &str) -> Option<&'static Func> {
    table.iter().find(|f| f.name == name)
}

/// The names of a table, for hints.
pub(crate) fn names(table: &[Func]) -> Vec<&'static str> {
    table.iter().map(|f| f.name).collect()
}
