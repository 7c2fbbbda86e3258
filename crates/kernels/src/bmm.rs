//! Batched matrix products, forward and backward: `c[b] = a[b] · b[b]` for `a` of
//! `batch × m × k` and `b` of `batch × k × n` (SwinUNETR's attention: `q · kᵀ` and
//! `softmax(…) · v` per window and head). Each product runs through the conv GEMM call, so
//! `--precision bf16` reaches the attention as it reaches the convs and linear layers; the
//! batch is spread over the rayon threads, one single-threaded GEMM per matrix.

use crate::conv_core::{matmul_with, operand, Dst};
use gemm::Parallelism;
use rayon::prelude::*;

/// The sizes of one batched product: `batch` products of `m × k` by `k × n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BmmShape {
    pub batch: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

impl BmmShape {
    fn check(&self, what: &str, a: &[f32], b: &[f32]) {
        let BmmShape { batch, m, k, n } = *self;
        assert_eq!(
            a.len(),
            batch * m * k,
            "{what}: a holds {} values, not {batch} × {m} × {k}",
            a.len()
        );
        assert_eq!(
            b.len(),
            batch * k * n,
            "{what}: b holds {} values, not {batch} × {k} × {n}",
            b.len()
        );
    }
}

/// `batch` products `out[i] (rows × cols) = lhs_i · rhs_i` over `inner`, each operand given by
/// its slice of one matrix and its (row, column) strides.
fn batched(
    batch: usize,
    [rows, cols, inner]: [usize; 3],
    lhs: (&[f32], usize, (usize, usize)),
    rhs: (&[f32], usize, (usize, usize)),
) -> Vec<f32> {
    let mut out = vec![0f32; batch * rows * cols];
    if rows * cols == 0 {
        return out;
    }
    out.par_chunks_mut(rows * cols)
        .enumerate()
        .for_each(|(i, c)| {
            matmul_with(
                Parallelism::None,
                [rows, cols, inner],
                Dst {
                    data: c,
                    row_stride: cols,
                    accumulate: false,
                },
                operand(&lhs.0[i * lhs.1..], lhs.2),
                operand(&rhs.0[i * rhs.1..], rhs.2),
            )
        });
    out
}

/// `c[i] = a[i] · b[i]` for every `i < batch`: `batch × m × n`.
pub fn bmm_forward(s: BmmShape, a: &[f32], b: &[f32]) -> Vec<f32> {
    s.check("bmm", a, b);
    let BmmShape { batch, m, k, n } = s;
    batched(batch, [m, n, k], (a, m * k, (k, 1)), (b, k * n, (n, 1)))
}

/// Gradients of [`bmm_forward`] for upstream `dc` (`batch × m × n`): `da = dc · bᵀ` (only when
/// `need_da`, else empty) and `db = aᵀ · dc`.
pub fn bmm_backward(
    s: BmmShape,
    a: &[f32],
    b: &[f32],
    dc: &[f32],
    need_da: bool,
) -> (Vec<f32>, Vec<f32>) {
    s.check("bmm backward", a, b);
    let BmmShape { batch, m, k, n } = s;
    assert_eq!(
        dc.len(),
        batch * m * n,
        "bmm backward: dc holds {} values, not {batch} × {m} × {n}",
        dc.len()
    );
    let da = if need_da {
        // bᵀ [n × k]: element (j, kk) at b[kk·n + j].
        batched(batch, [m, k, n], (dc, m * n, (n, 1)), (b, k * n, (1, n)))
    } else {
        Vec::new()
    };
    // aᵀ [k × m]: element (kk, i) at a[i·k + kk].
    let db = batched(batch, [k, n, m], (a, m * k, (1, k)), (dc, m * n, (n, 1)));
    (da, db)
}
