//! Loading a head: read, check the limits and the signature, fuse where it is linear, plan.

use super::signature::{Columns, Signature};
use super::{Engine, Head, HeadInfo, Plan};
use crate::error::{ErrorKind, RuntimeError, catching, tract_err};
use emotions_kernels::Isa;
use std::sync::Arc;
use tract_onnx::pb;
use tract_onnx::prelude::*;

/// Where a head is loaded from.
pub(super) enum Source {
    Path(std::path::PathBuf),
    Bytes { bytes: Vec<u8>, name: String },
}

/// Configures and loads a [`Head`]; everything is validated in [`HeadBuilder::build`].
pub struct HeadBuilder {
    pub(super) source: Source,
    pub(super) plan: Plan,
    pub(super) fuse: bool,
    pub(super) expected_dim: Option<usize>,
    pub(super) threads: usize,
}

impl HeadBuilder {
    /// Which plan to run (default: optimised).
    pub fn plan(mut self, plan: Plan) -> Self {
        self.plan = plan;
        self
    }

    /// Rewrite linear-logistic heads into one matmul + bias + sigmoid (default: on). Graphs
    /// that do not match run as they are.
    pub fn fuse(mut self, fuse: bool) -> Self {
        self.fuse = fuse;
        self
    }

    /// Require this input width (default: 384, the card's; `None` accepts the model's width).
    pub fn expected_dim(mut self, dim: Option<usize>) -> Self {
        self.expected_dim = dim;
        self
    }

    /// Parts a large batch is split into at most (default: the number of cores), run on the
    /// kernels' pool (`set_threads`). Rows never interact, so the scores do not depend on it.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Loads, validates and optimises the head.
    pub fn build(self) -> Result<Head, RuntimeError> {
        let (bytes, origin) = match self.source {
            Source::Path(path) => {
                let origin = path.display().to_string();
                let bytes = emotions_io::read_capped(
                    &path,
                    crate::onnx::limits::MAX_HEAD_FILE_BYTES,
                    "a head",
                )
                .map_err(|source| RuntimeError::new(&origin, ErrorKind::Io { source }))?;
                (bytes, origin)
            }
            Source::Bytes { bytes, name } => (bytes, name),
        };
        let proto = tract_onnx::onnx()
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|e| RuntimeError::new(&origin, ErrorKind::Decode { source: e.into() }))?;
        crate::onnx::limits::check_model(&proto, &origin, crate::onnx::limits::MAX_HEAD_NODES)?;
        let signature = Signature::validate(&proto, &origin, self.expected_dim)?;
        let isa = Isa::selected().map_err(|e| RuntimeError::from(e.at(&origin)))?;
        let (threads, plan) = (self.threads, self.plan);
        let origin_c = origin.clone();
        let head = catching(&origin_c, "load", move || {
            build_head(proto, signature, origin, plan, self.fuse, threads, isa)
        })?;
        head.check_probabilities()?;
        Ok(head)
    }
}

/// Fusion builds a `D × D` identity while it proves a head linear: wider heads run unfused.
const MAX_FUSED_WIDTH: usize = 4096;

fn build_head(
    proto: pb::ModelProto,
    signature: Signature,
    origin: String,
    plan: Plan,
    fuse: bool,
    threads: usize,
    isa: Isa,
) -> Result<Head, RuntimeError> {
    // Typed once, when a check needs a tensor's shape, and then for tract's plan too.
    let graph_input = (signature.input_name.as_str(), signature.input_dim);
    let mut typed = None;
    if let Some(graph) = &proto.graph {
        if crate::onnx::limits::linear_classifiers_need_types(graph, graph_input.0) {
            typed = Some(signature.typed_model(&proto, &origin)?);
        }
        crate::onnx::limits::check_linear_classifiers(graph, graph_input, typed.as_ref(), &origin)?;
    }
    let fused = if fuse && signature.input_dim <= MAX_FUSED_WIDTH {
        super::fusion::extract_linear_logistic(&proto, &signature)
    } else {
        None
    };
    let origin_ref = &origin;
    let optimise = |model: TypedModel| -> Result<Arc<TypedRunnableModel>, RuntimeError> {
        let model = match plan {
            Plan::Decluttered => model
                .into_decluttered()
                .map_err(|e| tract_err(origin_ref, "declutter", e))?,
            Plan::Optimized => model
                .into_optimized()
                .map_err(|e| tract_err(origin_ref, "optimise", e))?,
        };
        model
            .into_runnable()
            .map_err(|e| tract_err(origin_ref, "plan", e))
    };
    let is_fused = fused.is_some();
    let linear = fused.as_ref().map(|l| l.dense());
    let engine = match (fused, plan) {
        (Some(linear), Plan::Optimized) => Engine::Linear(linear.kernel(isa)),
        (Some(linear), Plan::Decluttered) => Engine::Tract {
            runnable: optimise(
                linear
                    .typed_model()
                    .map_err(|e| tract_err(&origin, "build", e))?,
            )?,
            columns: Columns::Fused,
        },
        (None, _) => Engine::Tract {
            runnable: optimise(match typed {
                Some(typed) => typed,
                None => signature.typed_model(&proto, &origin)?,
            })?,
            columns: signature.columns,
        },
    };
    Ok(Head {
        threads,
        linear,
        info: HeadInfo {
            origin,
            input_name: signature.input_name,
            input_dim: signature.input_dim,
            layout: signature.layout,
            fused: is_fused,
            plan,
            metadata: signature.metadata,
        },
        engine,
    })
}
