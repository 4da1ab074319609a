//! A metadata-free rendition of an image's original: the same pixels, byte
//! for byte (no decode, no re-encode), without EXIF, XMP, IPTC, GPS,
//! comments, maker notes or embedded secondary images, so a photo sent into
//! a conversation does not tell its members where and with what it was
//! taken. Only the orientation survives, as a one-tag EXIF block, so the
//! picture stands the way it did.
//!
//! What is kept is what decoding needs to show the same picture: JPEG
//! tables, frame and scans, the JFIF header, Adobe's colour transform and
//! ICC profiles; PNG's critical, colour and animation chunks; WebP's image,
//! alpha, animation and ICC chunks; GIF's images, palettes, frame controls
//! and its looping extension. Everything else goes: an unknown block may
//! carry anything.

/// Why an image could not be stripped (it is broken or not what it claims).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot strip the image's metadata: {0}")]
pub struct StripError(String);

fn broken(what: &str) -> StripError {
    StripError(what.to_owned())
}

/// The metadata-free rendition of an image of type `content_type`
/// (`image/jpeg`, `image/png`, `image/webp` or `image/gif`).
pub fn strip(bytes: &[u8], content_type: &str) -> Result<Vec<u8>, StripError> {
    match content_type {
        "image/jpeg" => jpeg(bytes),
        "image/png" => png(bytes),
        "image/webp" => webp(bytes),
        "image/gif" => gif(bytes),
        other => Err(StripError(format!("{other} is not a type this strips"))),
    }
}

/// The EXIF orientation (2–8; 1, the default, reads as none) in a TIFF
/// block, if it has one.
pub(crate) fn orientation_in_tiff(tiff: &[u8]) -> Option<u16> {
    let big = match tiff.get(..4)? {
        b"MM\0*" => true,
        b"II*\0" => false,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = tiff.get(at..at + 2)?.try_into().ok()?;
        Some(if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = tiff.get(at..at + 4)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let ifd = usize::try_from(u32_at(4)?).ok()?;
    let count = usize::from(u16_at(ifd)?);
    (0..count.min(512)).find_map(|i| {
        let entry = ifd + 2 + 12 * i;
        (u16_at(entry)? == 0x0112 && u16_at(entry + 2)? == 3)
            .then(|| u16_at(entry + 8))
            .flatten()
            .filter(|o| (2..=8).contains(o))
    })
}

/// A TIFF block holding only the orientation.
fn orientation_tiff(orientation: u16) -> Vec<u8> {
    let mut t = Vec::with_capacity(26);
    t.extend(b"MM\0*");
    t.extend(8u32.to_be_bytes());
    t.extend(1u16.to_be_bytes());
    t.extend(0x0112u16.to_be_bytes());
    t.extend(3u16.to_be_bytes());
    t.extend(1u32.to_be_bytes());
    t.extend(orientation.to_be_bytes());
    t.extend([0, 0]);
    t.extend(0u32.to_be_bytes());
    t
}

fn jpeg(bytes: &[u8]) -> Result<Vec<u8>, StripError> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(broken("not a JPEG"));
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend([0xFF, 0xD8]);
    let mut orientation = None;
    let mut i = 2;
    loop {
        // A marker: 0xFF, any fill bytes, the code.
        if bytes.get(i) != Some(&0xFF) {
            return Err(broken("a JPEG segment does not start with a marker"));
        }
        while bytes.get(i) == Some(&0xFF) {
            i += 1;
        }
        let marker = *bytes.get(i).ok_or_else(|| broken("the JPEG ends early"))?;
        i += 1;
        match marker {
            0xD9 => {
                out.extend([0xFF, 0xD9]);
                break;
            }
            0xD0..=0xD7 | 0x01 => {
                out.extend([0xFF, marker]);
                continue;
            }
            _ => {}
        }
        let len_bytes: [u8; 2] = bytes
            .get(i..i + 2)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| broken("the JPEG ends early"))?;
        let len = usize::from(u16::from_be_bytes(len_bytes));
        let body = bytes
            .get(i + 2..i + len)
            .filter(|_| len >= 2)
            .ok_or_else(|| broken("a JPEG segment runs past the end"))?;
        let keep = match marker {
            // JFIF, and Adobe's colour transform: needed to show the colours.
            0xE0 => body.starts_with(b"JFIF\0") || body.starts_with(b"JFXX\0"),
            0xEE => body.starts_with(b"Adobe"),
            0xE2 => body.starts_with(b"ICC_PROFILE\0"),
            0xE1 => {
                if orientation.is_none() && body.starts_with(b"Exif\0\0") {
                    orientation = orientation_in_tiff(&body[6..]);
                }
                false
            }
            // Every other application segment, and comments.
            0xE3..=0xED | 0xEF | 0xFE => false,
            _ => true,
        };
        if keep {
            out.extend([0xFF, marker]);
            out.extend(len_bytes);
            out.extend(body);
        }
        i += len;
        if marker == 0xDA {
            // The scan's entropy-coded data, up to the next marker (0xFF00
            // is a stuffed byte, 0xFFD0–D7 restart markers: both data).
            let start = i;
            while i + 1 < bytes.len()
                && !(bytes[i] == 0xFF
                    && bytes[i + 1] != 0
                    && !(0xD0..=0xD7).contains(&bytes[i + 1]))
            {
                i += 1;
            }
            if i + 1 >= bytes.len() {
                return Err(broken("the JPEG's image data never ends"));
            }
            out.extend(&bytes[start..i]);
        }
    }
    if let Some(o) = orientation {
        // Right after the JFIF header when there is one, else first.
        let at = if out[2..4] == [0xFF, 0xE0] {
            4 + usize::from(u16::from_be_bytes([out[4], out[5]]))
        } else {
            2
        };
        let tiff = orientation_tiff(o);
        let mut segment = vec![0xFF, 0xE1];
        segment.extend(u16::try_from(2 + 6 + tiff.len()).unwrap_or(0).to_be_bytes());
        segment.extend(b"Exif\0\0");
        segment.extend(tiff);
        out.splice(at..at, segment);
    }
    Ok(out)
}

/// CRC-32 (IEEE) as PNG chunks carry it.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend(u32::try_from(data.len()).unwrap_or(0).to_be_bytes());
    out.extend(kind);
    out.extend(data);
    out.extend(crc32(&[kind, data]).to_be_bytes());
}

fn png(bytes: &[u8]) -> Result<Vec<u8>, StripError> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !bytes.starts_with(SIGNATURE) {
        return Err(broken("not a PNG"));
    }
    // Critical chunks, colour and transparency, and APNG's animation.
    const KEPT: [&[u8; 4]; 13] = [
        b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT",
        b"acTL", b"fcTL", b"fdAT",
    ];
    let mut out = SIGNATURE.to_vec();
    let mut i = SIGNATURE.len();
    let mut orientation = None;
    loop {
        let header = bytes
            .get(i..i + 8)
            .ok_or_else(|| broken("the PNG ends before IEND"))?;
        let len = usize::try_from(u32::from_be_bytes([
            header[0], header[1], header[2], header[3],
        ]))
        .map_err(|_| broken("a PNG chunk is too long"))?;
        let kind: [u8; 4] = [header[4], header[5], header[6], header[7]];
        let whole = bytes
            .get(i..i + 12 + len)
            .ok_or_else(|| broken("a PNG chunk runs past the end"))?;
        if &kind == b"eXIf" {
            orientation = orientation.or_else(|| orientation_in_tiff(&whole[8..8 + len]));
        }
        if KEPT.contains(&&kind) {
            if &kind == b"IDAT"
                && let Some(o) = orientation.take()
            {
                // eXIf must come before the image data.
                png_chunk(&mut out, b"eXIf", &orientation_tiff(o));
            }
            out.extend(whole);
        }
        i += 12 + len;
        if &kind == b"IEND" {
            return Ok(out);
        }
    }
}

fn webp(bytes: &[u8]) -> Result<Vec<u8>, StripError> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WEBP" {
        return Err(broken("not a WebP"));
    }
    const KEPT: [&[u8; 4]; 7] = [
        b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP",
    ];
    let mut chunks = Vec::new();
    let mut orientation = None;
    let mut i = 12;
    while i + 8 <= bytes.len() {
        let kind: [u8; 4] = [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
        let len = usize::try_from(u32::from_le_bytes([
            bytes[i + 4],
            bytes[i + 5],
            bytes[i + 6],
            bytes[i + 7],
        ]))
        .map_err(|_| broken("a WebP chunk is too long"))?;
        let padded = len + (len & 1);
        let data = bytes
            .get(i + 8..i + 8 + len)
            .ok_or_else(|| broken("a WebP chunk runs past the end"))?;
        if &kind == b"EXIF" {
            let tiff = data.strip_prefix(b"Exif\0\0").unwrap_or(data);
            orientation = orientation.or_else(|| orientation_in_tiff(tiff));
        }
        if KEPT.contains(&&kind) {
            chunks.push((kind, data.to_vec()));
        }
        i += 8 + padded;
    }
    // A simple WebP (no VP8X header) has no metadata flags to say EXIF is there.
    let extended = chunks.iter_mut().find(|(k, _)| k == b"VP8X");
    let orientation = orientation.filter(|_| extended.is_some());
    if let Some((_, header)) = extended {
        let flags = header
            .first_mut()
            .ok_or_else(|| broken("an empty VP8X chunk"))?;
        // Clear the EXIF (0x08) and XMP (0x04) flags; EXIF back for the orientation.
        *flags &= !0x0C;
        if orientation.is_some() {
            *flags |= 0x08;
        }
    }
    let mut out = bytes[..12].to_vec();
    for (kind, data) in &chunks {
        riff_chunk(&mut out, kind, data);
    }
    if let Some(o) = orientation {
        riff_chunk(&mut out, b"EXIF", &orientation_tiff(o));
    }
    fix_riff_size(&mut out);
    Ok(out)
}

fn riff_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend(kind);
    out.extend(u32::try_from(data.len()).unwrap_or(0).to_le_bytes());
    out.extend(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
}

fn fix_riff_size(out: &mut [u8]) {
    let size = u32::try_from(out.len() - 8).unwrap_or(0).to_le_bytes();
    out[4..8].copy_from_slice(&size);
}

fn gif(bytes: &[u8]) -> Result<Vec<u8>, StripError> {
    if bytes.len() < 13 || !(bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a")) {
        return Err(broken("not a GIF"));
    }
    let table = |packed: u8| {
        if packed & 0x80 != 0 {
            3 << ((packed & 0x07) + 1)
        } else {
            0
        }
    };
    let end = broken;
    // Sub-blocks from `at` to their terminator; answers the index after it.
    let sub_blocks = |mut at: usize| -> Result<usize, StripError> {
        loop {
            let n = usize::from(
                *bytes
                    .get(at)
                    .ok_or_else(|| end("a GIF block runs past the end"))?,
            );
            at += 1 + n;
            if n == 0 {
                return Ok(at);
            }
        }
    };
    let mut i = 13 + table(bytes[10]);
    let mut out = bytes
        .get(..i)
        .ok_or_else(|| end("the GIF ends in its palette"))?
        .to_vec();
    loop {
        match *bytes.get(i).ok_or_else(|| end("the GIF has no trailer"))? {
            0x3B => {
                out.push(0x3B);
                return Ok(out);
            }
            0x2C => {
                let packed = *bytes.get(i + 9).ok_or_else(|| end("a GIF image is cut"))?;
                // Descriptor, local palette, LZW code size, the data.
                let after = sub_blocks(i + 10 + table(packed) + 1)?;
                out.extend(
                    bytes
                        .get(i..after)
                        .ok_or_else(|| end("a GIF image is cut"))?,
                );
                i = after;
            }
            0x21 => {
                let label = *bytes
                    .get(i + 1)
                    .ok_or_else(|| end("a GIF extension is cut"))?;
                let after = sub_blocks(i + 2)?;
                let block = bytes
                    .get(i..after)
                    .ok_or_else(|| end("a GIF extension is cut"))?;
                // Frame control (0xF9), plain text (0x01), and only the
                // looping application extension: comments and XMP go.
                let keep = match label {
                    0xF9 | 0x01 => true,
                    0xFF => {
                        block.get(3..14) == Some(b"NETSCAPE2.0")
                            || block.get(3..14) == Some(b"ANIMEXTS1.0")
                    }
                    _ => false,
                };
                if keep {
                    out.extend(block);
                }
                i = after;
            }
            _ => return Err(end("an unknown GIF block")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exif_with_gps(orientation: u16) -> Vec<u8> {
        // Little-endian TIFF: IFD0 with the orientation and a GPS pointer.
        let mut t: Vec<u8> = b"II*\0".to_vec();
        t.extend(8u32.to_le_bytes());
        t.extend(2u16.to_le_bytes());
        t.extend(0x0112u16.to_le_bytes());
        t.extend(3u16.to_le_bytes());
        t.extend(1u32.to_le_bytes());
        t.extend(orientation.to_le_bytes());
        t.extend([0, 0]);
        t.extend(0x8825u16.to_le_bytes());
        t.extend(4u16.to_le_bytes());
        t.extend(1u32.to_le_bytes());
        t.extend(38u32.to_le_bytes());
        t.extend(0u32.to_le_bytes());
        t.extend(1u16.to_le_bytes());
        t.extend(0x0001u16.to_le_bytes());
        t.extend(2u16.to_le_bytes());
        t.extend(2u32.to_le_bytes());
        t.extend(b"N\0\0\0");
        t.extend(0u32.to_le_bytes());
        t
    }

    /// A minimal JPEG skeleton: the segments around a scan of made-up data.
    fn jpeg_with(segments: &[(u8, Vec<u8>)], scan: &[u8]) -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        for (marker, body) in segments {
            j.extend([0xFF, *marker]);
            j.extend(u16::try_from(body.len() + 2).unwrap().to_be_bytes());
            j.extend(body);
        }
        j.extend([0xFF, 0xDA, 0x00, 0x04, 0x01, 0x00]);
        j.extend(scan);
        j.extend([0xFF, 0xD9]);
        j
    }

    #[test]
    fn a_jpeg_loses_exif_xmp_and_comments_keeps_its_pixels_and_orientation() {
        let scan = [0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56];
        let mut exif = b"Exif\0\0".to_vec();
        exif.extend(exif_with_gps(6));
        let original = jpeg_with(
            &[
                (0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0".to_vec()),
                (0xE1, exif),
                (
                    0xE1,
                    b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>where</x:xmpmeta>".to_vec(),
                ),
                (0xED, b"Photoshop 3.0\0IPTC".to_vec()),
                (0xFE, b"shot on my phone".to_vec()),
                (0xDB, vec![0; 65]),
                (0xC0, vec![8, 0, 16, 0, 16, 1, 1, 0x11, 0]),
            ],
            &scan,
        );
        let mut with_trailer = original.clone();
        with_trailer.extend(b"\xFF\xD8 a second image with its own EXIF");
        let clean = strip(&with_trailer, "image/jpeg").unwrap();
        for gone in [
            &b"xmpmeta"[..],
            b"IPTC",
            b"shot on my phone",
            b"N\0\0\0",
            b"second image",
        ] {
            assert!(
                !clean.windows(gone.len()).any(|w| w == gone),
                "{gone:?} survived"
            );
        }
        assert!(
            clean.ends_with(&[&scan[..], &[0xFF, 0xD9]].concat()),
            "scan untouched"
        );
        assert!(clean.starts_with(b"\xFF\xD8\xFF\xE0"), "JFIF first");
        let app1 = clean
            .windows(6)
            .position(|w| w == b"Exif\0\0")
            .expect("orientation kept");
        assert_eq!(orientation_in_tiff(&clean[app1 + 6..]), Some(6));
        assert!(clean.windows(2).any(|w| w == [0xFF, 0xDB]), "tables kept");
        assert_eq!(
            strip(&clean, "image/jpeg").unwrap(),
            clean,
            "stripping twice changes nothing"
        );
    }

    #[test]
    fn broken_input_is_an_error_not_a_panic() {
        for (bytes, kind) in [
            (&b"\xFF\xD8\xFF\xE1\xFF\xFF"[..], "image/jpeg"),
            (b"\xFF\xD8\xFF\xDA\x00\x04\x01\x00\x12\x34", "image/jpeg"),
            (b"\x89PNG\r\n\x1a\n\0\0\0\xFFIHDR", "image/png"),
            (b"RIFF\0\0\0\0WEBPVP8X\xFF\xFF\xFF\xFF", "image/webp"),
            (b"GIF89a\x01\0\x01\0\x80\0\0", "image/gif"),
            (b"", "image/jpeg"),
            (b"text", "text/plain"),
        ] {
            assert!(strip(bytes, kind).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn png_text_and_exif_chunks_go() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png_chunk(&mut png, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]);
        png_chunk(&mut png, b"tEXt", b"Comment\0at home");
        png_chunk(&mut png, b"eXIf", &exif_with_gps(3));
        png_chunk(&mut png, b"IDAT", b"pixels");
        png_chunk(&mut png, b"IEND", b"");
        let clean = strip(&png, "image/png").unwrap();
        assert!(!clean.windows(7).any(|w| w == b"at home"));
        assert!(!clean.windows(4).any(|w| w == b"N\0\0\0"), "no GPS");
        let at = clean
            .windows(4)
            .position(|w| w == b"eXIf")
            .expect("orientation");
        assert_eq!(orientation_in_tiff(&clean[at + 4..]), Some(3));
        assert!(clean.windows(6).any(|w| w == b"pixels"));
    }

    #[test]
    fn webp_exif_and_xmp_go_and_the_flags_say_so() {
        let mut w = b"RIFF\0\0\0\0WEBP".to_vec();
        riff_chunk(&mut w, b"VP8X", &[0x0C, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        riff_chunk(&mut w, b"VP8L", b"pixel");
        riff_chunk(&mut w, b"EXIF", &exif_with_gps(1));
        riff_chunk(&mut w, b"XMP ", b"<where/>");
        fix_riff_size(&mut w);
        let clean = strip(&w, "image/webp").unwrap();
        assert!(!clean.windows(4).any(|x| x == b"EXIF" || x == b"XMP "));
        assert_eq!(clean[20] & 0x0C, 0, "flags cleared");
        assert_eq!(
            u32::from_le_bytes(clean[4..8].try_into().unwrap()) as usize,
            clean.len() - 8
        );
    }

    #[test]
    fn gif_comments_and_xmp_go_the_loop_stays() {
        let mut g = b"GIF89a\x01\0\x01\0\x80\0\0".to_vec();
        g.extend([0, 0, 0, 255, 255, 255]);
        g.extend(b"\x21\xFF\x0BNETSCAPE2.0\x03\x01\0\0\0");
        g.extend(b"\x21\xFE\x07at home\0");
        g.extend(b"\x21\xFF\x0BXMP DataXMP\x05where\0");
        g.extend(b"\x2C\0\0\0\0\x01\0\x01\0\0\x02\x02\x44\x01\0");
        g.push(0x3B);
        let clean = strip(&g, "image/gif").unwrap();
        assert!(!clean.windows(7).any(|w| w == b"at home"));
        assert!(!clean.windows(5).any(|w| w == b"where"));
        assert!(clean.windows(11).any(|w| w == b"NETSCAPE2.0"));
        assert!(clean.ends_with(b"\x02\x02\x44\x01\0\x3B"));
    }

    #[cfg(feature = "decoders")]
    #[test]
    fn a_real_jpeg_decodes_to_the_same_pixels_the_same_way_up() {
        use image::ImageDecoder;
        let img =
            image::RgbImage::from_fn(64, 32, |x, y| image::Rgb([x as u8 * 4, y as u8 * 8, 90]));
        let mut encoded = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut encoded, 85)
            .encode_image(&img)
            .unwrap();
        let mut exif = vec![0xFF, 0xE1];
        let tiff = exif_with_gps(6);
        exif.extend(u16::try_from(2 + 6 + tiff.len()).unwrap().to_be_bytes());
        exif.extend(b"Exif\0\0");
        exif.extend(tiff);
        let tagged = [&encoded[..2], &exif[..], &encoded[2..]].concat();
        let clean = strip(&tagged, "image/jpeg").unwrap();
        assert!(!clean.windows(4).any(|w| w == b"N\0\0\0"), "no GPS");
        let decode = |bytes: &[u8]| {
            let mut d = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(bytes)).unwrap();
            let orientation = d.orientation().unwrap();
            (
                image::DynamicImage::from_decoder(d).unwrap().to_rgb8(),
                orientation,
            )
        };
        let (before, _) = decode(&tagged);
        let (after, orientation) = decode(&clean);
        assert_eq!(before, after, "pixels untouched");
        assert_eq!(orientation, image::metadata::Orientation::Rotate90);
    }
}
