//! `emotions-wasm`: the classifier for JavaScript, in Node and in browsers.
//!
//! wasm-bindgen exports [`Classifier`] to `pkg/emotions_wasm.js`; the package's front door is
//! `js/index.js`, which loads the module in Node or a browser, checks arguments (so a wrong type
//! is an `Error` naming it, not a trap) and shapes the results. Errors carry the library's
//! messages, the ones the CLI prints.
//!
//! Empty on any other target (see Cargo.toml).
#![cfg(target_family = "wasm")]

use emotions::LABELS;
use wasm_bindgen::prelude::*;

/// A go_emotions classifier: the compiled-in all-MiniLM-L6-v2 encoder with the tuned head, or a
/// head given as ONNX bytes.
#[wasm_bindgen]
pub struct Classifier {
    texts: emotions::Classifier,
    precision: emotions::Precision,
}

#[wasm_bindgen]
impl Classifier {
    /// Loads the compiled-in models; with `head` (an ONNX file's bytes), that head over the
    /// compiled-in encoder instead, decided with `thresholds_json` (`{label: t}` or an array in
    /// label order) when given, else the model card's thresholds. `precision` is `"int16"`, `"int8"` or
    /// `"f32"`; `None` takes the class's default.
    pub fn load(
        head: Option<Vec<u8>>,
        thresholds_json: Option<String>,
        precision: Option<String>,
    ) -> Result<Classifier, JsError> {
        let precision = match precision.as_deref() {
            None => emotions::Precision::default(),
            Some(name) => emotions::Precision::from_name(name).ok_or_else(|| {
                JsError::new(&format!(
                    "precision: expected 'int16', 'int8' or 'f32', found {name:?}"
                ))
            })?,
        };
        let mut builder = emotions::Classifier::builder()
            .head_threads(1)
            .encoder_options(emotions::EncoderOptions {
                precision,
                ..Default::default()
            });
        if let Some(bytes) = head {
            builder = builder.head_bytes(bytes);
        }
        if let Some(json) = thresholds_json {
            builder = builder.thresholds(
                emotions::Thresholds::from_json_str(&json, "thresholds")
                    .map_err(|e| JsError::new(&e.to_string()))?,
            );
        }
        Ok(Classifier {
            texts: builder.build().map_err(js_error)?,
            precision,
        })
    }

    /// One JSON array of `{"labels": [...], "scores": {...}}`, each element exactly the line
    /// `emotions classify` prints for that text.
    #[wasm_bindgen(js_name = classifyJson)]
    pub fn classify_json(&self, texts: Vec<String>) -> Result<String, JsError> {
        let predictions = self.texts.classify_texts(&texts).map_err(js_error)?;
        serde_json::to_string(&predictions).map_err(|e| JsError::new(&e.to_string()))
    }

    /// The plain encoder's sentence embeddings, `texts.length × dim` values row by row, as
    /// `emotions embed` writes them.
    pub fn embed(&self, texts: Vec<String>) -> Result<Vec<f32>, JsError> {
        self.texts.embed(&texts).map_err(js_error)
    }

    /// The embedding width (384 for all-MiniLM-L6-v2).
    #[wasm_bindgen(getter)]
    pub fn dim(&self) -> usize {
        self.texts.input_dim()
    }

    /// The 28 go_emotions labels, in the order of the score columns.
    #[wasm_bindgen(getter)]
    pub fn labels(&self) -> Vec<String> {
        LABELS.iter().map(|l| l.to_string()).collect()
    }

    /// `"int16"`, `"int8"` or `"f32"`: how the encoder's projections multiply.
    #[wasm_bindgen(getter)]
    pub fn precision(&self) -> String {
        self.precision.name().to_string()
    }

    /// The instruction-set class the kernels run (`simd128` or `portable`).
    #[wasm_bindgen(getter)]
    pub fn isa(&self) -> Result<String, JsError> {
        emotions::Isa::selected()
            .map(|i| i.to_string())
            .map_err(|e| JsError::new(&e.to_string()))
    }
}

fn js_error(e: emotions::Error) -> JsError {
    JsError::new(&e.to_string())
}
