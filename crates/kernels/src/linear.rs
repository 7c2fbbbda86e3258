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
    let db = (0..cout)
        .into_par_iter()
        .map(|o| (0..rows).map(|r| dy[r * cout + o] as f64).sum::<f64>() as f32)
        .collect();
    (dx, dw, db)
}
