//! The transcodes: H.264 + AAC in MP4 for video, Opus in Ogg for audio, each
//! a decode → filter graph → encode → mux chain driven by one read loop.

use std::path::{Path, PathBuf};

use ffmpeg::{Dictionary, Packet, Rational, codec, decoder, encoder, filter, format, frame, media};
use ffmpeg_next as ffmpeg;

use super::{AvError, Probe, decoder_for, fit_even, open_input, output_error, probe, video_stream};
use crate::image_render;
use crate::preset::{AudioPreset, Rendered, VideoPreset};

/// One audio track decoded, resampled by a filter graph, and encoded.
struct AudioChain {
    input_index: usize,
    output_index: usize,
    decoder: decoder::Audio,
    graph: filter::Graph,
    encoder: encoder::Audio,
    frame: frame::Audio,
}

impl AudioChain {
    #[allow(clippy::too_many_arguments)]
    fn new(
        stream: &format::stream::Stream<'_>,
        octx: &mut format::context::Output,
        codec_name: &'static str,
        sample_format: format::Sample,
        rate: u32,
        channels: u16,
        bit_rate: u32,
        frame_size: Option<u32>,
    ) -> Result<Self, AvError> {
        let decoder = decoder_for(stream)?.audio()?;
        let codec = encoder::find_by_name(codec_name)
            .ok_or_else(|| AvError::Output(format!("no {codec_name} encoder")))?;
        let layout = ffmpeg::ChannelLayout::default(i32::from(channels));
        let output_index = octx.add_stream(codec)?.index();
        let mut enc = codec::Context::new_with_codec(codec).encoder().audio()?;
        enc.set_rate(rate as i32);
        enc.set_channel_layout(layout);
        enc.set_channels(i32::from(channels));
        enc.set_format(sample_format);
        enc.set_bit_rate(bit_rate as usize);
        enc.set_time_base(Rational(1, rate as i32));
        if octx.format().flags().contains(format::Flags::GLOBAL_HEADER) {
            enc.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let encoder = enc.open_as(codec).map_err(output_error)?;
        describe_stream(octx, output_index, &encoder, Rational(1, rate as i32))?;

        let in_layout = if decoder.channel_layout().bits() == 0 {
            ffmpeg::ChannelLayout::default(i32::from(decoder.channels()))
        } else {
            decoder.channel_layout()
        };
        let args = format!(
            "time_base={}:sample_rate={}:sample_fmt={}:channel_layout=0x{:x}",
            stream.time_base(),
            decoder.rate(),
            decoder.format().name(),
            in_layout.bits()
        );
        let spec = format!(
            "aresample={rate},aformat=sample_fmts={}:channel_layouts=0x{:x}",
            sample_format.name(),
            layout.bits()
        );
        let mut graph = filter_graph(("abuffer", &args), "abuffersink", &spec)?;
        let size = frame_size.unwrap_or_else(|| encoder.frame_size());
        if size > 0
            && let Some(mut sink) = graph.get("out")
        {
            sink.sink().set_frame_size(size);
        }
        Ok(Self {
            input_index: stream.index(),
            output_index,
            decoder,
            graph,
            encoder,
            frame: frame::Audio::empty(),
        })
    }

    /// Feeds one packet (or the end, with `None`) through to the muxer.
    fn push(
        &mut self,
        packet: Option<&Packet>,
        octx: &mut format::context::Output,
    ) -> Result<(), AvError> {
        decode_into(&mut self.decoder, &mut self.frame, &mut self.graph, packet)?;
        let mut filtered = frame::Audio::empty();
        while next_filtered(&mut self.graph, &mut filtered) {
            encode(&mut self.encoder, Some(&filtered), self.output_index, octx)?;
        }
        if packet.is_none() {
            encode(&mut self.encoder, None, self.output_index, octx)?;
        }
        Ok(())
    }
}

/// The picture track decoded, turned upright and scaled by a filter graph,
/// and encoded with x264.
struct VideoChain {
    input_index: usize,
    output_index: usize,
    decoder: decoder::Video,
    graph: filter::Graph,
    encoder: encoder::Video,
    frame: frame::Video,
    last_pts: Option<i64>,
}

impl VideoChain {
    fn new(
        stream: &format::stream::Stream<'_>,
        octx: &mut format::context::Output,
        preset: &VideoPreset,
        probe: &Probe,
    ) -> Result<Self, AvError> {
        let decoder = decoder_for(stream)?.video()?;
        let time_base = stream.time_base();
        let (dw, dh) = (
            probe.width.unwrap_or(decoder.width()),
            probe.height.unwrap_or(decoder.height()),
        );
        let (w, h) = fit_even(dw, dh, preset.max_long_edge, preset.max_short_edge);
        let turn = match probe.rotation {
            90 => "transpose=clock,",
            180 => "hflip,vflip,",
            270 => "transpose=cclock,",
            _ => "",
        };
        let sar = decoder.aspect_ratio();
        let sar = if sar.numerator() > 0 && sar.denominator() > 0 {
            sar
        } else {
            Rational(1, 1)
        };
        let args = format!(
            "video_size={}x{}:pix_fmt={}:time_base={}:pixel_aspect={}",
            decoder.width(),
            decoder.height(),
            ffmpeg::ffi::AVPixelFormat::from(decoder.format()) as i32,
            time_base,
            sar
        );
        let spec = format!("{turn}scale={w}:{h},setsar=1,format=yuv420p");
        let graph = filter_graph(("buffer", &args), "buffersink", &spec)?;

        let codec = encoder::find_by_name("libx264")
            .ok_or_else(|| AvError::Output("no libx264 encoder".into()))?;
        let output_index = octx.add_stream(codec)?.index();
        let mut enc = codec::Context::new_with_codec(codec).encoder().video()?;
        enc.set_width(w);
        enc.set_height(h);
        enc.set_format(format::Pixel::YUV420P);
        enc.set_aspect_ratio(Rational(1, 1));
        enc.set_time_base(time_base);
        let rate = stream.avg_frame_rate();
        if rate.numerator() > 0 && rate.denominator() > 0 {
            enc.set_frame_rate(Some(rate));
        }
        if octx.format().flags().contains(format::Flags::GLOBAL_HEADER) {
            enc.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let mut options = Dictionary::new();
        options.set("preset", &preset.x264_preset);
        options.set("crf", &preset.crf.to_string());
        let encoder = enc.open_with(options).map_err(output_error)?;
        describe_stream(octx, output_index, &encoder, time_base)?;
        Ok(Self {
            input_index: stream.index(),
            output_index,
            decoder,
            graph,
            encoder,
            frame: frame::Video::empty(),
            last_pts: None,
        })
    }

    fn push(
        &mut self,
        packet: Option<&Packet>,
        octx: &mut format::context::Output,
    ) -> Result<(), AvError> {
        decode_into(&mut self.decoder, &mut self.frame, &mut self.graph, packet)?;
        let mut filtered = frame::Video::empty();
        while next_filtered(&mut self.graph, &mut filtered) {
            // x264 refuses time going backwards or standing still; broken
            // files do both.
            let pts = filtered.pts().unwrap_or(0);
            let pts = match self.last_pts {
                Some(last) if pts <= last => last + 1,
                _ => pts,
            };
            self.last_pts = Some(pts);
            filtered.set_pts(Some(pts));
            filtered.set_kind(ffmpeg::picture::Type::None);
            encode(&mut self.encoder, Some(&filtered), self.output_index, octx)?;
        }
        if packet.is_none() {
            encode(&mut self.encoder, None, self.output_index, octx)?;
        }
        Ok(())
    }
}

fn filter_named(name: &str) -> Result<filter::Filter, AvError> {
    filter::find(name).ok_or_else(|| AvError::Output(format!("no {name} filter")))
}

/// A filter graph from a `(source filter, its arguments)` input named `in`
/// through `spec` to a `sink` named `out`.
fn filter_graph(
    (source, args): (&str, &str),
    sink: &str,
    spec: &str,
) -> Result<filter::Graph, AvError> {
    let mut graph = filter::Graph::new();
    graph.add(&filter_named(source)?, "in", args)?;
    graph.add(&filter_named(sink)?, "out", "")?;
    graph.output("in", 0)?.input("out", 0)?.parse(spec)?;
    graph.validate()?;
    Ok(graph)
}

/// Gives output stream `index` its opened encoder's parameters and time base.
fn describe_stream(
    octx: &mut format::context::Output,
    index: usize,
    encoder: &encoder::Encoder,
    time_base: Rational,
) -> Result<(), AvError> {
    let mut ost = octx
        .stream_mut(index)
        .ok_or_else(|| AvError::Output("lost the output stream".into()))?;
    ost.set_parameters(encoder);
    ost.set_time_base(time_base);
    Ok(())
}

/// Sends a frame (or, with `None`, the end) to an encoder and moves every
/// packet it has ready into the muxer.
fn encode(
    encoder: &mut encoder::Encoder,
    frame: Option<&ffmpeg::Frame>,
    index: usize,
    octx: &mut format::context::Output,
) -> Result<(), AvError> {
    match frame {
        Some(frame) => encoder.send_frame(frame),
        None => encoder.send_eof(),
    }
    .map_err(output_error)?;
    write_packets(encoder, index, octx)
}

/// Hands a packet (or, with `None`, the end) to a decoder, and every frame it
/// gives to the filter graph's input, timed by its best-effort timestamp.
fn decode_into(
    decoder: &mut decoder::Opened,
    frame: &mut ffmpeg::Frame,
    graph: &mut filter::Graph,
    packet: Option<&Packet>,
) -> Result<(), AvError> {
    match packet {
        // A damaged packet is skipped, as players do.
        Some(p) => {
            let _ = decoder.send_packet(p);
        }
        None => {
            let _ = decoder.send_eof();
        }
    }
    while decoder.receive_frame(frame).is_ok() {
        let ts = frame.timestamp();
        frame.set_pts(ts);
        with_source(graph, |src| src.add(frame))?;
    }
    if packet.is_none() {
        with_source(graph, |src| src.flush())?;
    }
    Ok(())
}

/// Runs `f` on the graph's input (`in`).
fn with_source<R>(
    graph: &mut filter::Graph,
    f: impl FnOnce(&mut filter::context::Source<'_>) -> Result<R, ffmpeg::Error>,
) -> Result<R, AvError> {
    let mut ctx = graph
        .get("in")
        .ok_or_else(|| AvError::Output("the filter graph lost its input".into()))?;
    Ok(f(&mut ctx.source())?)
}

/// Takes the next filtered frame from the graph's output (`out`), if any.
fn next_filtered(graph: &mut filter::Graph, frame: &mut ffmpeg::Frame) -> bool {
    graph
        .get("out")
        .is_some_and(|mut ctx| ctx.sink().frame(frame).is_ok())
}

/// Moves every packet the encoder has ready into the muxer.
fn write_packets(
    encoder: &mut encoder::Encoder,
    index: usize,
    octx: &mut format::context::Output,
) -> Result<(), AvError> {
    let time_base = encoder.time_base();
    let out_base = octx
        .stream(index)
        .map(|s| s.time_base())
        .ok_or_else(|| AvError::Output("lost the output stream".into()))?;
    let mut packet = Packet::empty();
    while encoder.receive_packet(&mut packet).is_ok() {
        packet.set_stream(index);
        packet.rescale_ts(time_base, out_base);
        packet.write_interleaved(octx).map_err(output_error)?;
    }
    Ok(())
}

/// Reads `ictx` to its end, handing each packet to the chain that wants it,
/// then flushes them and closes the file.
fn pump(
    ictx: &mut format::context::Input,
    octx: &mut format::context::Output,
    mut video: Option<&mut VideoChain>,
    mut audio: Option<&mut AudioChain>,
) -> Result<(), AvError> {
    let mut packet = Packet::empty();
    // As `ffmpeg` does, a read error other than "try again" ends the input.
    while packet.read(ictx).is_ok() {
        let index = packet.stream();
        if let Some(v) = video.as_deref_mut().filter(|v| v.input_index == index) {
            v.push(Some(&packet), octx)?;
        } else if let Some(a) = audio.as_deref_mut().filter(|a| a.input_index == index) {
            a.push(Some(&packet), octx)?;
        }
    }
    if let Some(v) = video {
        v.push(None, octx)?;
    }
    if let Some(a) = audio {
        a.push(None, octx)?;
    }
    octx.write_trailer().map_err(output_error)?;
    Ok(())
}

/// H.264 + AAC in MP4, fitted inside the preset's box, upright, with the
/// index (`moov`) before the media data so playback starts at once.
pub fn transcode_video(
    input: &Path,
    output: &Path,
    preset: &VideoPreset,
    demuxers: &str,
    probe: &Probe,
) -> Result<Rendered, AvError> {
    let mut ictx = open_input(input, demuxers)?;
    let mut octx = format::output_as(&output, "mp4").map_err(output_error)?;
    let stream =
        video_stream(&ictx).ok_or_else(|| AvError::Undecodable("no video track".into()))?;
    let mut video = VideoChain::new(&stream, &mut octx, preset, probe)?;
    let mut audio = match ictx.streams().best(media::Type::Audio) {
        Some(s) => Some(AudioChain::new(
            &s,
            &mut octx,
            "aac",
            format::Sample::F32(format::sample::Type::Planar),
            48_000,
            2,
            preset.audio_bit_rate,
            None,
        )?),
        None => None,
    };
    let mut options = Dictionary::new();
    options.set("movflags", "+faststart");
    octx.write_header_with(options).map_err(output_error)?;
    pump(&mut ictx, &mut octx, Some(&mut video), audio.as_mut())?;
    if video.last_pts.is_none() {
        return Err(AvError::Undecodable("no frame of the video decodes".into()));
    }
    drop(octx);
    finished(output, &preset.name, preset.version, "video/mp4")
}

/// Opus in Ogg, resampled to 48 kHz, mono by default: a voice note in a
/// fraction of its original size.
pub fn transcode_audio(
    input: &Path,
    output: &Path,
    preset: &AudioPreset,
    demuxers: &str,
) -> Result<Rendered, AvError> {
    let mut ictx = open_input(input, demuxers)?;
    let mut octx = format::output_as(&output, "ogg").map_err(output_error)?;
    let stream = ictx
        .streams()
        .best(media::Type::Audio)
        .ok_or_else(|| AvError::Undecodable("no audio track".into()))?;
    let mut audio = AudioChain::new(
        &stream,
        &mut octx,
        "libopus",
        format::Sample::F32(format::sample::Type::Packed),
        48_000,
        preset.channels.clamp(1, 2),
        preset.bit_rate,
        Some(960),
    )?;
    octx.write_header().map_err(output_error)?;
    pump(&mut ictx, &mut octx, None, Some(&mut audio))?;
    drop(octx);
    finished(output, &preset.name, preset.version, "audio/ogg")
}

/// Describes a written derivative by probing it back.
fn finished(
    path: &Path,
    name: &str,
    version: u32,
    content_type: &str,
) -> Result<Rendered, AvError> {
    let size = std::fs::metadata(path)
        .map_err(|e| image_render::ImageError::Io(path.to_owned(), e))?
        .len();
    // Our own output, opened with the demuxer of what we wrote.
    let demuxers = crate::sniff::demuxers_for(content_type).unwrap_or("mov,mp4,ogg");
    let probe = probe(path, demuxers)?;
    Ok(Rendered {
        preset: name.to_owned(),
        version,
        path: PathBuf::from(path),
        content_type: content_type.to_owned(),
        size,
        width: probe.width.unwrap_or(0),
        height: probe.height.unwrap_or(0),
        duration_ms: probe.duration_ms,
    })
}
