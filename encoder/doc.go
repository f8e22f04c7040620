// Package encoder owns everything about media in Banyan: probing sources,
// planning chunks, validating ladders, building ffmpeg command lines,
// encoding chunks and audio, assembling, indexing (HLS) and verifying.
//
// It knows nothing of raft, gRPC or the scheduler. The scheduler runs the
// steps of this package as ordinary tasks; BuildGraph (graph.go) turns one
// encode request into the generic task graph, and the step functions
// (EncodeChunk, EncodeAudio, Assemble, Index, Verify) are what the
// agent-side CLI calls inside each task.
//
// # Pure and impure parts
//
// PlanChunks, ValidateLadder, Backend.Args, ChunkArgs and BuildGraph are
// pure: no clock, no I/O. Probe and the step functions run ffprobe/ffmpeg
// (found on PATH, see FFmpeg and FFprobe) as argument lists, never through a
// shell; every value put on a command line is validated first.
//
// # Sources from the wild
//
// frames.go decides which frames a source presents (packets, edit lists,
// decoder checks); chunkrun.go how a chunk is decoded, checked against
// clean decodes and pre-rolled; picture.go what each rendition's frames look
// like (ladder fitting, rotation, deinterlacing, pixel formats, HDR);
// conform.go the frame-by-frame check of an output against its source.
// The corpus in encoder/corpus holds sources with the traits these handle.
//
// # Exact timestamps
//
// A chunk is encoded from the source's decoded frames selected by
// presentation timestamp (trim on the source's own pts after a keyframe seek,
// -copyts, -fps_mode passthrough), with the encoder time base set to the
// source's time base and every pts shifted by a constant offset, into a NUT
// file (NUT keeps any time base exactly and takes every codec). Assemble
// joins the chunks with the concat demuxer, giving each file an explicit
// duration computed from the source's FramePTS: the demuxer then shifts every
// chunk by exactly the same amount (the constant offset), so the assembled
// stream carries the source's timestamps unchanged, for CFR and VFR sources
// alike. Letting the concat demuxer take durations from the files, or going
// through MPEG-TS (a 90 kHz clock), rounds the chunk boundaries and shifts
// frames by a tick or more; both were measured and rejected.
package encoder
