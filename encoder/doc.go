// Package encoder will hold everything about media: probing sources,
// planning chunks, building ffmpeg command lines, assembling, indexing and
// verifying. It knows nothing of raft or gRPC; the scheduler knows nothing
// of it. (Work of the chunked-encoding issue; nothing here yet.)
package encoder
