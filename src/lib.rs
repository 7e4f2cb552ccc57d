//! convirt: an image builder and provisioner for Xen virtual machines.

pub mod archive;
pub mod atomic;
pub mod bridge;
pub mod cli;
pub mod crash;
pub mod create_like;
pub mod diagnostic;
pub mod edit;
pub mod eval;
pub mod image;
pub mod interrupt;
pub mod provision;
pub mod render;
pub mod resolve;
pub mod settings;
pub mod state;
pub mod store;
pub mod subst;
pub mod syntax;
pub mod sys;
pub mod tree;
pub mod validate;
pub mod value;

#[cfg(test)]
mod structure;
