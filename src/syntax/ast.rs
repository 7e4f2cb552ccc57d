//! convirt's own AST of a config file: what the dialect allows, with byte spans. The
//! evaluator and the editor read this; only `convert` knows the parser's tree.

use crate::diagnostic::Span;

/// Deepest nesting of expressions accepted; deeper input is refused before it can exhaust the
/// stack. Real configs nest three or four levels.
pub const MAX_DEPTH: usize = 100;

#[derive(Debug, Clone)]
pub struct Module {
    pub stmts: Vec<Stmt>,
}

#[derive(Debug, Clone)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum StmtKind {
    /// `a = b = value`, also `a, b = value`.
    Assign {
        targets: Vec<Target>,
        value: Expr,
    },
    AugAssign {
        target: Name,
        op: BinOp,
        value: Expr,
    },
    If {
        test: Expr,
        body: Vec<Stmt>,
        orelse: Vec<Stmt>,
    },
    /// `import os.path as p`: (dotted module, bound name).
    Import {
        names: Vec<(String, Option<String>, Span)>,
    },
    /// `from os import path as p`.
    ImportFrom {
        module: String,
        names: Vec<(String, Option<String>, Span)>,
    },
    Pass,
    /// A bare string (a docstring); evaluated for nothing.
    Doc,
}

#[derive(Debug, Clone)]
pub struct Name {
    pub id: String,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum Target {
    Name(Name),
    Tuple(Vec<Target>, Span),
}

impl Target {
    pub fn names(&self) -> Vec<&Name> {
        match self {
            Target::Name(n) => vec![n],
            Target::Tuple(ts, _) => ts.iter().flat_map(Target::names).collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum ExprKind {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Name(String),
    List(Vec<Expr>),
    Tuple(Vec<Expr>),
    Dict(Vec<(Expr, Expr)>),
    BinOp(Box<Expr>, BinOp, Box<Expr>),
    Unary(UnaryOp, Box<Expr>),
    BoolOp(BoolOp, Vec<Expr>),
    Compare(Box<Expr>, Vec<(CmpOp, Expr)>),
    IfExp {
        test: Box<Expr>,
        body: Box<Expr>,
        orelse: Box<Expr>,
    },
    Call {
        func: Box<Expr>,
        args: Vec<Expr>,
        kwargs: Vec<(String, Expr)>,
    },
    Attribute(Box<Expr>, String),
    Subscript(Box<Expr>, Box<Expr>),
    Slice(Option<Box<Expr>>, Option<Box<Expr>>, Option<Box<Expr>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
    LShift,
    RShift,
    BitOr,
    BitXor,
    BitAnd,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::FloorDiv => "//",
            BinOp::Mod => "%",
            BinOp::Pow => "**",
            BinOp::LShift => "<<",
            BinOp::RShift => ">>",
            BinOp::BitOr => "|",
            BinOp::BitXor => "^",
            BinOp::BitAnd => "&",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Not,
    Neg,
    Pos,
    Invert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoolOp {
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtE,
    Gt,
    GtE,
    Is,
    IsNot,
    In,
    NotIn,
}
