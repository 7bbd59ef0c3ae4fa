// How mh-store lays messages out in LMDB: the tables and their key formats. Shared by
// the store and by tools or tests that look at a store's tables directly.
//
//   messages   id (16 bytes)                          -> the frame, byte for byte
//   by_time    time (8, ordered) + id (16)            -> empty
//   by_source  source (its bytes; "" is stored as "\0") DUPSORT+DUPFIXED
//                                                     -> time (8, ordered) + id (16)
//   meta       "format"                               -> "mh-store 1"
//              "bytes"                                -> u64 little-endian: sum of frame sizes
//
// "time (8, ordered)" is the int64 event time with its sign bit flipped, big-endian, so
// that bytewise order (LMDB's) is numeric order, negative times included. Ids are
// time ordered, so the messages table is in ingestion order and mostly appended to.
#pragma once

#include "message/id.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace mh::store {

constexpr const char* k_messages_table = "messages";
constexpr const char* k_by_time_table = "by_time";
constexpr const char* k_by_source_table = "by_source";
constexpr const char* k_meta_table = "meta";
constexpr std::string_view k_format_key = "format";
constexpr std::string_view k_format_value = "mh-store 1";
constexpr std::string_view k_bytes_key = "bytes";

constexpr size_t k_id_bytes = 16;
constexpr size_t k_time_bytes = 8;
constexpr size_t k_time_key_bytes = k_time_bytes + k_id_bytes;
// LMDB's default largest key (MDB_MAXKEYSIZE) bounds the source index's keys.
constexpr size_t k_max_source_bytes = 511;

using TimeKey = std::array<std::byte, k_time_key_bytes>;

void encode_time(int64_t time_ns, std::byte* out);
int64_t decode_time(const std::byte* in);

// time + id: the by_time key and the by_source value.
TimeKey time_key(int64_t time_ns, std::span<const uint8_t> id);

// The by_source key of `source` (empty sources have a key too).
std::string_view source_key(std::string_view source);
std::string_view source_from_key(std::string_view key);

}  // namespace mh::store
