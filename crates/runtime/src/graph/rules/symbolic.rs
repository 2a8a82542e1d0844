//! Index arithmetic on symbolic dims that tract's declutter cannot fold.
//!
//! transformers 5's TorchScript exports build the attention mask by indexing the flattened
//! `[batch, sequence]` mask with `batch_index * sequence + key_index`. After typing, the
//! `sequence` there is a constant holding the symbol itself, and tract's `Mul` declutter casts
//! such a constant to a number to look for shortcuts, which fails ("Undetermined symbol in
//! expression"). The op is right; only the shortcut search is not. So such ops are wrapped in
//! [`Opaque`], which evaluates exactly as the op it wraps (symbols resolved at run time) and
//! offers the optimiser nothing to rewrite.

use crate::graph::ops::opaque::Opaque;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;

/// A constant input that holds a symbol (not just numbers).
fn symbolic_constant(fact: &TypedFact) -> bool {
    fact.datum_type == TDim::datum_type()
        && fact.konst.as_ref().is_some_and(|k| {
            k.try_as_plain_ram()
                .ok()
                .and_then(|p| {
                    p.as_slice::<TDim>()
                        .ok()
                        .map(|dims| dims.iter().any(|d| d.to_i64().is_err()))
                })
                .unwrap_or(false)
        })
}

/// Wraps every binary op over dims that has a symbolic constant input; returns how many.
pub(crate) fn shield_symbolic_arithmetic(model: &mut TypedModel) -> TractResult<usize> {
    let mut shielded = 0;
    for id in model.eval_order()? {
        let node = &model.nodes[id];
        let Some(op) = node.op_as::<TypedBinOp>() else {
            continue;
        };
        let facts = model.node_input_facts(id)?;
        let all_known = facts.iter().all(|f| f.konst.is_some());
        let wanted = !all_known && facts.iter().any(|f| symbolic_constant(f));
        drop(facts);
        if !wanted {
            continue;
        }
        let op = op.clone();
        let wrapped = Opaque { inner: op };
        model.nodes[id].op = Box::new(wrapped);
        shielded += 1;
    }
    Ok(shielded)
}
