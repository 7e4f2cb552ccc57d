//! convirt: an image builder and provisioner for Xen virtual machines.

pub mod atomic;
pub mod diagnostic;
pub mod eval;
pub mod settings;
pub mod store;
pub mod subst;
pub mod syntax;
pub mod value;
