//! Matchers on tract's typed graph: each finds a pattern and patches in one of
//! [`super::ops`]. [`super::pipeline`] runs them in order.

pub(crate) mod attention;
pub(crate) mod fold;
pub(crate) mod gelu;
pub(crate) mod linear;
mod pattern;
pub(crate) mod softmax;
pub(crate) mod symbolic;
