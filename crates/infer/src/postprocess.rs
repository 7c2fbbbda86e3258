//! Post-processing: keep only the largest 6-connected component of each foreground class.

/// Sets every voxel of class `c > 0` outside that class's largest 6-connected component to 0.
pub fn largest_component_per_class(labels: &mut [f32], shape: [usize; 3]) {
    let [d, h, w] = shape;
    let mut comp = vec![u32::MAX; labels.len()];
    let mut best: std::collections::BTreeMap<u32, (u32, usize)> = Default::default();
    let mut next = 0u32;
    let mut stack = Vec::new();
    for start in 0..labels.len() {
        let c = labels[start] as u32;
        if c == 0 || comp[start] != u32::MAX {
            continue;
        }
        let id = next;
        next += 1;
        let mut size = 0usize;
        comp[start] = id;
        stack.push(start);
        while let Some(v) = stack.pop() {
            size += 1;
            let (i, j, k) = (v / (h * w), (v / w) % h, v % w);
            let mut visit = |u: usize| {
                if comp[u] == u32::MAX && labels[u] as u32 == c {
                    comp[u] = id;
                    stack.push(u);
                }
            };
            if i > 0 {
                visit(v - h * w);
            }
            if i + 1 < d {
                visit(v + h * w);
            }
            if j > 0 {
                visit(v - w);
            }
            if j + 1 < h {
                visit(v + w);
            }
            if k > 0 {
                visit(v - 1);
            }
            if k + 1 < w {
                visit(v + 1);
            }
        }
        let e = best.entry(c).or_insert((id, 0));
        if size > e.1 {
            *e = (id, size);
        }
    }
    for (v, l) in labels.iter_mut().enumerate() {
        let c = *l as u32;
        if c != 0 && best.get(&c).map(|b| b.0) != Some(comp[v]) {
            *l = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_largest_per_class() {
        // 1×1×10 line: class 1 in runs of 2 and 3, class 2 in runs of 1 and 1.
        let mut l = vec![1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 0.0, 2.0, 0.0];
        largest_component_per_class(&mut l, [1, 1, 10]);
        assert_eq!(l, vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 0.0, 0.0, 0.0]);
    }
}
