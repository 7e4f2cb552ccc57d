//! convirt: an image builder and provisioner for Xen virtual machines.

pub mod archive;
pub(crate) mod atomic;
pub(crate) mod bridge;
pub mod cli;
pub mod crash;
pub(crate) mod create_like;
pub mod diagnostic;
pub mod edit;
pub mod eval;
pub(crate) mod fetch;
pub mod image;
pub(crate) mod interrupt;
pub(crate) mod provision;
pub(crate) mod remote;
pub mod render;
pub mod resolve;
pub mod settings;
pub(crate) mod share;
pub(crate) mod signing;
pub(crate) mod state;
pub mod store;
pub mod subst;
pub mod syntax;
pub(crate) mod sys;
pub(crate) mod tree;
pub(crate) mod trust;
pub(crate) mod ui;
pub(crate) mod validate;
pub mod value;
pub(crate) mod vms;

#[cfg(test)]
mod structure;
