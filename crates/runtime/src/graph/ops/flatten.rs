//! ONNX `Flatten` over shapes with several symbolic dims. tract's own refuses them ("Can not
//! compute a shape with square of symbols"), and transformers 5's TorchScript exports flatten
//! the `[batch, sequence]` attention mask to build the 4-d mask by indexing.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// `[d0, .., dn]` to `[d0 * .. * d(axis-1), d(axis) * .. * dn]`, symbols multiplied as they are.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub(crate) struct SymbolicFlatten {
    axis: i64,
}

impl SymbolicFlatten {
    fn output_shape(&self, shape: &[TDim]) -> TractResult<[TDim; 2]> {
        let rank = shape.len() as i64;
        let axis = if self.axis < 0 {
            self.axis + rank
        } else {
            self.axis
        };
        ensure!(
            (0..=rank).contains(&axis),
            "Flatten axis {} is out of range for rank {rank}",
            self.axis
        );
        let (outer, inner) = shape.split_at(axis as usize);
        let product = |dims: &[TDim]| dims.iter().cloned().product::<TDim>().simplify();
        Ok([product(outer), product(inner)])
    }
}

impl Expansion for SymbolicFlatten {
    fn name(&self) -> StaticName {
        "SymbolicFlatten".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
        s.given(&inputs[0].shape, move |s, shape| {
            let [outer, inner] = self.output_shape(&shape)?;
            s.equals(&outputs[0].shape, ShapeFactoid::from(vec![outer, inner]))
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let from = model.outlet_fact(inputs[0])?.shape.to_tvec();
        let to: TVec<TDim> = self.output_shape(&from)?.into_iter().collect();
        model.wire_node(prefix, AxisOp::Reshape(0, from, to), inputs)
    }
}

/// The op builder registered for `Flatten` in the encoder's ONNX parser.
pub(crate) fn flatten(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let axis: i64 = node.get_attr_opt("axis")?.unwrap_or(1);
    Ok((expand(SymbolicFlatten { axis }), vec![]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_multiply_and_axes_count_from_either_end() {
        let scope = SymbolScope::default();
        let (b, s) = (scope.sym("batch").to_dim(), scope.sym("sequence").to_dim());
        let shape = [b.clone(), s.clone(), 4.to_dim()];
        let at = |axis| SymbolicFlatten { axis }.output_shape(&shape).unwrap();
        assert_eq!(at(2), [b.clone() * &s, 4.to_dim()]);
        assert_eq!(at(-1), [b.clone() * &s, 4.to_dim()]);
        assert_eq!(at(3), [b.clone() * &s * 4, 1.to_dim()]);
        assert_eq!(at(0), [1.to_dim(), b.clone() * &s * 4]);
        assert!(SymbolicFlatten { axis: 4 }.output_shape(&shape).is_err());
        assert!(SymbolicFlatten { axis: -4 }.output_shape(&shape).is_err());
    }
}
