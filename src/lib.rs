//! convirt: an image builder and provisioner for Xen virtual machines.

pub mod archive;
pub mod atomic;
pub mod cli;
pub mod create_like;
pub mod diagnostic;
pub mod edit;
pub mod eval;
pub mod image;
pub mod provision;
pub mod remote;
pub mod render;
pub mod resolve;
pub mod settings;
pub mod store;
pub mod subst;
pub mod syntax;
pub mod validate;
pub mod value;
