//! Fuses each self-attention block into one op.
//!
//! Exported BERT graphs compute attention as a dozen ops over `[batch, heads, seq, seq]`
//! tensors: reshapes and transposes of K, two batched matmuls with their packing, the mask
//! `Add`, the softmax and an `IsNaN`/`Where` guard. On go_emotions texts (about 20 tokens)
//! those ops did about 1% of MiniLM's arithmetic but took 18% of its time, because every one of
//! them is a pass over memory sized for tiny matrices. [`FusedAttention`] does the whole block
//! per (text, head) in a few kilobytes of scratch.
//!
//! Matching is exact or nothing: every reshape and transpose between the Q/K/V projections and
//! the matmuls is replayed on a symbolic layout (which axis holds batch, position, head or
//! depth), and the fusion happens only when the two matmuls contract depth and key position as
//! attention does. Anything else is left as tract has it.

mod kernel;
mod matcher;
mod op;

pub(crate) use matcher::fuse_attention;
