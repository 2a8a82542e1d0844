//! Folds what the ONNX-file pass ([`crate::graph::passes::fold`]) cannot see: a `Cast` or `Mul`
//! of constants that only typing reveals.

use tract_onnx::prelude::*;

/// Replaces every `Cast` or `Mul` whose inputs are all constants with its value.
pub(crate) fn fold_constant_dequantisation(model: &mut TypedModel) -> TractResult<()> {
    loop {
        let Some(patch) = next_fold(model)? else {
            return Ok(());
        };
        patch.apply(model)?;
    }
}

/// A patch replacing the first foldable node by its constant value, if any.
fn next_fold(model: &TypedModel) -> TractResult<Option<TypedModelPatch>> {
    for id in model.eval_order()? {
        let node = model.node(id);
        let name = node.op.name();
        if name != "Cast" && name != "Mul" {
            continue;
        }
        let facts = model.node_input_facts(id)?;
        let Some(values) = facts
            .iter()
            .map(|f| f.konst.clone())
            .collect::<Option<TVec<_>>>()
        else {
            continue;
        };
        let Some(result) = node
            .op
            .eval_out_of_plan(values.into_iter().map(|v| v.into_tvalue()).collect())?
        else {
            continue;
        };
        let mut patch = TypedModelPatch::default();
        let wire = patch.add_const(&node.name, result[0].clone().into_arc_tensor())?;
        patch.shunt_outside(model, id.into(), wire)?;
        return Ok(Some(patch));
    }
    Ok(None)
}
