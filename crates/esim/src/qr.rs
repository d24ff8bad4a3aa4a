//! QR codes for activation codes, drawn here: SVG for pages, PNG for
//! files. The matrix comes from the `qrcode` crate; the PNG encoding (one
//! byte a pixel, grey, zlib's stored blocks) is ours, so no image library
//! is needed.

use qrcode::{Color, EcLevel, QrCode};

/// Quiet zone around the code, in modules (the standard asks for 4).
const QUIET: usize = 4;

/// The dark modules of `text`'s QR code (error correction M), row by row.
fn matrix(text: &str) -> Result<(usize, Vec<bool>), qrcode::types::QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)?;
    let width = code.width();
    Ok((width, code.to_colors().into_iter().map(|c| c == Color::Dark).collect()))
}

/// The QR code of `text` as SVG path data: the side of the square (quiet
/// zone included) in modules, and one unit square per dark module; for
/// pages that write their own markup.
pub fn svg_path(text: &str) -> Result<(usize, String), qrcode::types::QrError> {
    let (width, dark) = matrix(text)?;
    let mut path = String::new();
    for (index, _) in dark.iter().enumerate().filter(|(_, d)| **d) {
        let (x, y) = (index % width + QUIET, index / width + QUIET);
        path.push_str(&format!("M{x} {y}h1v1h-1z"));
    }
    Ok((width + 2 * QUIET, path))
}

/// The QR code of `text` as an SVG image, one unit a module.
pub fn svg(text: &str, title: &str) -> Result<String, qrcode::types::QrError> {
    let (size, path) = svg_path(text)?;
    let escaped: String = title.chars().map(|c| match c {
        '<' => "&lt;".to_string(),
        '>' => "&gt;".to_string(),
        '&' => "&amp;".to_string(),
        '"' => "&quot;".to_string(),
        c => c.to_string(),
    }).collect();
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" shape-rendering=\"crispEdges\" role=\"img\" aria-label=\"{escaped}\"><title>{escaped}</title><rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/><path fill=\"#000\" d=\"{path}\"/></svg>"
    ))
}

/// The QR code of `text` as a PNG image, `scale` pixels a module.
pub fn png(text: &str, scale: usize) -> Result<Vec<u8>, qrcode::types::QrError> {
    let (width, dark) = matrix(text)?;
    let scale = scale.clamp(1, 32);
    let side = (width + 2 * QUIET) * scale;
    let mut pixels = Vec::with_capacity(side * (side + 1));
    for y in 0..side {
        pixels.push(0); // filter type: none
        for x in 0..side {
            let (mx, my) = ((x / scale).wrapping_sub(QUIET), (y / scale).wrapping_sub(QUIET));
            let is_dark = mx < width && my < width && dark[my * width + mx];
            pixels.push(if is_dark { 0x00 } else { 0xff });
        }
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&(side as u32).to_be_bytes());
    header.extend_from_slice(&(side as u32).to_be_bytes());
    header.extend_from_slice(&[8, 0, 0, 0, 0]); // 8 bits, grey, deflate, adaptive filters, no interlace
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"IDAT", &zlib_stored(&pixels));
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream of stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(65_535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let length = block.len() as u16;
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&(!length).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for byte in data {
        a = (a + u32::from(*byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_the_standard_ones() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926, "CRC-32 check value");
        let stream = zlib_stored(b"Wikipedia");
        assert_eq!(&stream[stream.len() - 4..], &0x11e6_0398u32.to_be_bytes(), "Adler-32 of Wikipedia");
    }

    #[test]
    fn images_have_their_shape() {
        let png = png("LPA:1$smdp.example.net$ABC-123", 4).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        let side = u32::from_be_bytes(png[16..20].try_into().unwrap());
        assert_eq!(side % 4, 0);
        let svg = svg("LPA:1$smdp.example.net$ABC-123", "eSIM <code>").unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<title>eSIM &lt;code&gt;</title>"), "{svg}");
    }
}
