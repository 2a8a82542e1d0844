//! Raw ONNX, before tract sees it: the limits every model file is checked against, and the
//! proto helpers the head's and the encoder's passes share.

pub(crate) mod file;
pub mod limits;
pub(crate) mod proto;
