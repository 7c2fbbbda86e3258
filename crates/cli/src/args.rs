//! Shared argument parsers.

/// Parses `a,b,c` into three values.
pub fn triple<T: std::str::FromStr>(s: &str) -> Result<[T; 3], String> {
    let v: Vec<T> = s
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<T>()
                .map_err(|_| format!("{p:?} is not a number"))
        })
        .collect::<Result<_, _>>()?;
    match <[T; 3]>::try_from(v) {
        Ok(a) => Ok(a),
        Err(v) => Err(format!(
            "expected three comma-separated values, got {}",
            v.len()
        )),
    }
}

/// Parses `a,b` into two values.
pub fn pair(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or("expected two comma-separated values, e.g. -125,275")?;
    Ok((
        a.trim()
            .parse()
            .map_err(|_| format!("{a:?} is not a number"))?,
        b.trim()
            .parse()
            .map_err(|_| format!("{b:?} is not a number"))?,
    ))
}
