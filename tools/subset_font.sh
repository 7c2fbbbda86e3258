#!/usr/bin/env bash
# Writes crates/plot/assets/DejaVuSans-subset.ttf, the font repux's pictures embed (so drawing
# needs no system fonts): Debian's DejaVu Sans (fonts-dejavu-core) cut to Latin-1, general
# punctuation, arrows and Greek, which label names and axis text use. Needs fonttools
# (pip install fonttools).
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf}
pyftsubset "$src" \
  --unicodes="U+0020-007E,U+00A0-00FF,U+0391-03C9,U+2010-2027,U+2030-205E,U+2190-2193,U+2212,U+2248,U+2264,U+2265" \
  --layout-features='kern,liga' --no-hinting --desubroutinize \
  --output-file=crates/plot/assets/DejaVuSans-subset.ttf
cp /usr/share/doc/fonts-dejavu-core/copyright crates/plot/assets/DejaVuSans-LICENSE 2>/dev/null || true
