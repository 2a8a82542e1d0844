//! What an encoder graph is loaded with, and what the load rewrote.

/// How many parts of the encoder graph run on this crate's fused ops rather than tract's
/// generic ones. An encoder whose graph the rewrites do not recognise still runs, more slowly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GraphRewrites {
    /// Softmaxes over the last axis: one per attention block in a BERT-family graph, so the
    /// number of blocks [`attention`](Self::attention) could have matched.
    pub softmax: usize,
    /// Exact GELUs that run in one pass on this crate's op, whether tract or this crate's
    /// rewrite recognised the chain.
    pub gelu: usize,
    /// Self-attention blocks (scores, mask, softmax, values) turned into one op.
    pub attention: usize,
    /// Layer norms over the last axis that run as one op, not tract's eleven.
    pub layer_norm: usize,
    /// Matmuls by constant weights (with their bias and residual adds) whose weights are packed
    /// once at load.
    pub linear: usize,
    /// Of those, how many run on the 16-bit integer kernels ([`Precision::Int16`]).
    pub int16: usize,
    /// Of those, how many run with 8-bit activations: a dynamically quantised graph's, where
    /// the CPU has AVX-512 VNNI.
    pub uint8: usize,
    /// Of those, how many add an adapter's low-rank term beside their weights.
    pub low_rank: usize,
}

/// How the projections multiply. Everything else (attention, GELU, layer norm) is f32 in both.
///
/// The default is chosen per instruction-set class ([`Precision::for_isa`]), by measurement:
/// 8-bit activations where calibrated on AVX-512 VNNI, the 16-bit integer projections where the
/// class multiplies 16-bit integers faster than f32 (AVX-512, AVX2, SIMD128), f32 elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// In integers, at twice the f32 rate: each token's activations are rounded to 11-16-bit
    /// integers (the widest range whose i32 sums cannot overflow) and multiplied exactly.
    /// Int8 weights (an int8 export: int8 values times a scale per feature) are used as they
    /// are; f32 weights are rounded to 11-bit integers with a scale per feature. Measured
    /// against onnxruntime f32: cosine ≥ 0.999999 on all-MiniLM-L6-v2 int8 and on a 12-layer
    /// bge-small replica.
    Int16,
    /// [`Precision::Int16`], except that the projections an int8 calibration lists
    /// (`calibration.json` beside the model; the embedded all-MiniLM-L6-v2 has one) take 8-bit
    /// activations where the CPU has AVX-512 VNNI (`vpdpbusd`, twice `vpdpwssd`'s rate), with
    /// their outlier channels in i16. Elsewhere, and without a calibration, it is `Int16`.
    /// Each token is rounded over its own range (`(max - min) / 255` a step). The embedded
    /// calibration puts 29 of the 36 projections in 8 bits (65% of the multiply-adds), chosen
    /// by measured loss per multiply-add (`scripts/calibrate_int8.py`). Measured against
    /// onnxruntime f32: see docs/PERFORMANCE.md. The default on AVX-512 VNNI.
    Int8,
    /// f32 throughout, as onnxruntime computes the graph: the exact mode.
    F32,
}

impl Precision {
    /// Its name in flags and reports: `int16`, `int8` or `f32`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Int16 => "int16",
            Precision::Int8 => "int8",
            Precision::F32 => "f32",
        }
    }

    /// The precision [`name`](Self::name) names.
    pub fn from_name(name: &str) -> Option<Precision> {
        [Precision::Int16, Precision::Int8, Precision::F32]
            .into_iter()
            .find(|p| p.name() == name)
    }
    /// Whether the projections run on the integer kernels (either integer mode).
    pub fn is_integer(self) -> bool {
        matches!(self, Precision::Int16 | Precision::Int8)
    }

    /// The fastest precision on a class within the accuracy contract, as measured.
    /// - avx512-vnni: [`Precision::Int8`]. `embed` of 1,000 go_emotions test texts, one thread,
    ///   Zen 4, 2026-12-08: 1.95-2.04 s, against 2.43-2.50 s in int16 and 6.5 s in f32; mean
    ///   cosine against onnxruntime f32 0.99993 on 2,000 dev texts (the calibration keeps its
    ///   loss within 7e-5 on train texts). Without a calibration it is int16.
    /// - avx512 and avx2: [`Precision::Int16`] (`embed` of 500 test texts, one thread, Zen 4
    ///   with each class forced, 2026-12-02: 2.11 against 4.13 s in f32 on avx512; on avx2, since
    ///   its kernel took 6 rows × 16 features a tile, 1,000 texts in 4.03 against 7.09 s at one
    ///   thread and 2.23 against 3.96 s at two, 2026-12-06).
    /// - portable: f32, whose matmul is tract-linalg's, SIMD on any CPU (int16 took 93.6 against
    ///   4.88 s).
    pub fn for_isa(class: emotions_kernels::IsaClass) -> Precision {
        use emotions_kernels::IsaClass;
        match class {
            IsaClass::Avx512Vnni => Precision::Int8,
            IsaClass::Avx512 | IsaClass::Avx2 => Precision::Int16,
            // WebAssembly: `i32x4.dot_i16x8_s` does 8 multiply-adds an instruction, f32x4 4 in
            // two (no FMA). `embed` of 320 go_emotions test texts in batches of 32, Node 20 on a
            // Zen 5, 2026-12-03: 4.06 s int16 against 11.3 s f32.
            IsaClass::Simd128 => Precision::Int16,
            // Portable, and any class added before it is measured. On AArch64 too:
            // NEON's `SMLAL` does 4 multiply-adds an instruction, as f32 `FMLA` does, so the
            // integer path has nothing to gain there (not timed: no ARM hardware here).
            _ => Precision::F32,
        }
    }
}

impl Default for Precision {
    /// [`Precision::for_isa`] of the class that runs ([`emotions_kernels::Isa::selected`]).
    fn default() -> Self {
        let class = emotions_kernels::Isa::selected()
            .map_or(emotions_kernels::IsaClass::Portable, |isa| isa.class());
        Precision::for_isa(class)
    }
}

/// Which shapes get their own optimised plan. The projections (weights packed once at load) and
/// attention are shape-free ops of this crate, so a symbolic plan runs as fast as a concrete
/// one and pads nothing; buckets remain for graphs those rewrites do not match, where tract's
/// own matmuls are much faster with concrete shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlanShapes {
    /// One plan per (batch size, sequence bucket), texts padded up to the bucket.
    Buckets,
    /// One plan for every shape, batch and sequence left symbolic, texts padded to the longest
    /// of their batch only.
    #[default]
    Symbolic,
}

impl std::fmt::Display for GraphRewrites {
    /// `attention 6/6, GELU 6, layer norms 13, projections 36 (36 in int16)`, and `, 12 in
    /// u8` where some have 8-bit activations.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "attention {}/{}, GELU {}, layer norms {}, projections {} ({} in int16",
            self.attention, self.softmax, self.gelu, self.layer_norm, self.linear, self.int16
        )?;
        if self.uint8 > 0 {
            write!(f, ", {} in u8", self.uint8)?;
        }
        if self.low_rank > 0 {
            write!(f, ", {} with a low-rank adapter", self.low_rank)?;
        }
        write!(f, ")")
    }
}
