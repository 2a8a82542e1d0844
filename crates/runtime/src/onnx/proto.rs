//! Helpers for raw ONNX protos, shared by the head's and the encoder's passes: element types,
//! tensor values, who reads a value, and one index of initializers by name.

use std::collections::HashMap;
use tract_onnx::pb;

/// ONNX `TensorProto.DataType` codes.
pub(crate) const ONNX_FLOAT: i32 = 1;
pub(crate) const ONNX_UINT8: i32 = 2;
pub(crate) const ONNX_INT8: i32 = 3;

/// Whether a tensor's values are in the file itself rather than in external data.
pub(crate) fn in_file(t: &pb::TensorProto) -> bool {
    t.data_location.unwrap_or(0) == 0
}

/// The integer values of an int8/uint8 initializer.
pub(crate) fn integers(t: &pb::TensorProto) -> Option<Vec<i32>> {
    if !in_file(t) {
        return None;
    }
    match t.data_type {
        ONNX_INT8 if !t.raw_data.is_empty() => {
            Some(t.raw_data.iter().map(|&b| b as i8 as i32).collect())
        }
        ONNX_UINT8 if !t.raw_data.is_empty() => {
            Some(t.raw_data.iter().map(|&b| b as i32).collect())
        }
        ONNX_INT8 | ONNX_UINT8 => Some(t.int32_data.clone()),
        _ => None,
    }
}

/// The values of an f32 initializer stored in the file (raw or as `float_data`).
pub(crate) fn floats(t: &pb::TensorProto) -> Option<Vec<f32>> {
    if t.data_type != ONNX_FLOAT || !in_file(t) {
        return None;
    }
    Some(if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    })
}

/// `values` as little-endian bytes, ONNX's `raw_data` layout.
pub(crate) fn le_bytes(values: &[f32]) -> Vec<u8> {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: f32 has no padding and any byte pattern is a valid u8; the slice covers
        // exactly the values' memory, and on a little-endian target it is their LE encoding.
        unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), values.len() * 4) }
            .to_vec()
    }
    #[cfg(not(target_endian = "little"))]
    {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }
}

/// A graph's initializers by name, with their index.
pub(crate) struct Initializers<'g> {
    graph: &'g pb::GraphProto,
    by_name: HashMap<&'g str, usize>,
}

impl<'g> Initializers<'g> {
    pub(crate) fn of(graph: &'g pb::GraphProto) -> Self {
        let by_name = graph
            .initializer
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect();
        Initializers { graph, by_name }
    }

    /// The initializer named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&'g pb::TensorProto> {
        self.index(name).map(|i| &self.graph.initializer[i])
    }

    /// Its index in the graph's initializers.
    pub(crate) fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }
}

/// Which nodes of an ONNX graph read each value, by node index. A graph output counts as a
/// reader of its own ([`ProtoReaders::GRAPH_OUTPUT`]), so a value the graph returns never has a
/// sole node reader.
pub(crate) struct ProtoReaders<'g>(HashMap<&'g str, Vec<usize>>);

impl<'g> ProtoReaders<'g> {
    /// Stands for the graph's outputs among a value's readers.
    pub(crate) const GRAPH_OUTPUT: usize = usize::MAX;

    pub(crate) fn of(graph: &'g pb::GraphProto) -> Self {
        let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, node) in graph.node.iter().enumerate() {
            for input in &node.input {
                readers.entry(input.as_str()).or_default().push(i);
            }
        }
        for output in &graph.output {
            readers
                .entry(output.name.as_str())
                .or_default()
                .push(Self::GRAPH_OUTPUT);
        }
        ProtoReaders(readers)
    }

    /// Every reader of `value`, once per input that reads it.
    pub(crate) fn all(&self, value: &str) -> &[usize] {
        self.0.get(value).map_or(&[], Vec::as_slice)
    }

    /// The one node that reads `value`, if exactly one node does and the graph does not
    /// return it.
    pub(crate) fn sole(&self, value: &str) -> Option<usize> {
        match self.all(value) {
            &[r] if r != Self::GRAPH_OUTPUT => Some(r),
            _ => None,
        }
    }
}
