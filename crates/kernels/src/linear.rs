//! `nn.Linear` on the last axis, forward and backward: `y [rows × out] = x [rows × in] · Wᵀ + b`
//! with PyTorch's weight layout `[out, in]`. The products run through the conv GEMM call, so
//! `--precision bf16` reaches SwinUNETR's projections, MLPs and patch merging as it reaches
//! the convs.

use crate::conv_core::{operand, Dst};
use crate::dense::matmul;
use rayon::prelude::*;

/// `y = x · Wᵀ + b` for `x` of `rows × cin`, `w` of `cout × cin`.
pub fn linear_forward(
    rows: usize,
    cin: usize,
    cout: usize,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
) -> Vec<f32> {
    assert_eq!(
        x.len(),
        rows * cin,
        "linear: x holds {} values, not {rows} × {cin}",
        x.len()
    );
    assert_eq!(
        w.len(),
        cout * cin,
        "linear: weight holds {} values, not {cout} × {cin}",
        w.len()
    );
    let mut y = vec![0f32; rows * cout];
    // Wᵀ [cin × cout]: element (i, o) at w[o·cin + i].
    matmul(
        [rows, cout, cin],
        Dst {
            data: &mut y,
            row_stride: cout,
            accumulate: false,
        },
        operand(x, (cin, 1)),
        operand(w, (1, cin)),
    );
    if let Some(b) = b {
        assert_eq!(
            b.len(),
            cout,
            "linear: bias holds {} values, not {cout}",
            b.len()
        );
        y.par_chunks_mut(cout)
            .for_each(|r| r.iter_mut().zip(b).for_each(|(v, bv)| *v += bv));
    }
    y
}

/// Gradients of [`linear_forward`] for upstream `dy` (`rows × cout`): `(dx, dw, db)`; `dx` only
/// when `need_dx`, otherwise empty.
pub fn linear_backward(
    rows: usize,
    cin: usize,
    cout: usize,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    need_dx: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(
        x.len(),
        rows * cin,
        "linear backward: x holds {} values, not {rows} × {cin}",
        x.len()
    );
    assert_eq!(
        w.len(),
        cout * cin,
        "linear backward: weight holds {} values",
        w.len()
    );
    assert_eq!(
        dy.len(),
        rows * cout,
        "linear backward: dy holds {} values, not {rows} × {cout}",
        dy.len()
    );
    let mut dx = Vec::new();
    if need_dx {
        dx = vec![0f32; rows * cin];
        // dx [rows × cin] = dy [rows × cout] · W [cout × cin]
        matmul(
            [rows, cin, cout],
            Dst {
                data: &mut dx,
                row_stride: cin,
                accumulate: false,
            },
            operand(dy, (cout, 1)),
            operand(w, (cin, 1)),
        );
    }
    let mut dw = vec![0f32; cout * cin];
    // dW [cout × cin] = dyᵀ [cout × rows] · x [rows × cin]
    matmul(
        [cout, cin, rows],
        Dst {
            data: &mut dw,
            row_stride: cin,
            accumulate: false,
        },
        operand(dy, (1, cout)),
        operand(x, (cin, 1)),
    );
    (dx, dw, column_sums(dy, cout))
}

/// `Σ_r m[r, j]` in f64 for the row-major `m` with `cols` columns: by blocks of rows in
/// parallel, each summed row by row (contiguous, vectorised), then the blocks' sums added. Per
/// column, a pass down `m`'s stride would read all of `m` `cols` times.
fn column_sums(m: &[f32], cols: usize) -> Vec<f32> {
    const ROWS_PER_TASK: usize = 1024;
    if cols == 0 {
        return Vec::new();
    }
    m.par_chunks(cols * ROWS_PER_TASK)
        .fold(
            || vec![0f64; cols],
            |mut acc, block| {
                for row in block.chunks_exact(cols) {
                    for (a, &v) in acc.iter_mut().zip(row) {
                        *a += v as f64;
                    }
                }
                acc
            },
        )
        .reduce(
            || vec![0f64; cols],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        )
        .into_iter()
        .map(|v| v as f32)
        .collect()
}
