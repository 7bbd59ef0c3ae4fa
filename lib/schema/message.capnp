# The one contract between all mh tools: every frame on a pipe or a ZeroMQ
# socket is one Message in the standard Cap'n Proto stream framing, so
#   capnp decode lib/schema/message.capnp Message < stream
# reads any mh stream.
@0xa0d508400bdcb86d;

$import "/capnp/c++.capnp".namespace("mh::schema");

struct Message {
  id @0 :Data;
  # 16 bytes, time-ordered (UUIDv7 layout), assigned once at ingestion and
  # never changed afterwards: deduplication and replay rely on it.

  time @1 :Int64;
  # Event time from the origin, nanoseconds since the Unix epoch.

  ingested @2 :Int64;
  # When the endpoint accepted the message, nanoseconds since the Unix epoch.

  source @3 :Text;
  # Origin id, e.g. "sensor-000123".

  gateway @4 :Text;
  # Authenticated identity that delivered the message. Only mh-endpoint sets it.

  kind @5 :Text;
  # "telemetry", "alert", "aggregate", "command", "event", ...

  fields @6 :List(Field);
  # Typed name/value pairs that filters and aggregators read without parsing.

  body @7 :Data;
  # Opaque payload bytes for what is not a field.

  control :union {
    # Control frames travel in the same stream as data, in order.
    none @8 :Void;
    # An ordinary data message.
    barrier @9 :Barrier;
    # A checkpoint barrier: every tool passes it on after everything that came
    # before it; stateful tools snapshot when it passes.
  }
}

struct Field {
  name @0 :Text;
  # Nested JSON objects flatten to dotted names ("motor.rpm").

  value :union {
    float @1 :Float64;
    int @2 :Int64;
    text @3 :Text;
    bool @4 :Bool;
    json @5 :Text;
    # A value with no scalar form (a JSON array or null), kept as JSON text so
    # that JSON -> frame -> JSON gives it back unchanged.
  }
}

struct Barrier {
  number @0 :UInt64;
  # Checkpoint number, increasing, assigned by the journal that injects it.

  time @1 :Int64;
  # When the barrier was injected, nanoseconds since the Unix epoch.
}
