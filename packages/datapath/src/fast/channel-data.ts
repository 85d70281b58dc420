// TURN ChannelData (RFC 8656 section 12.4): [channel number u16][length u16][data], the compact
// framing a TURN server relays on a bound channel. Over UDP no padding is needed.

/** Bytes ChannelData puts in front of the data. */
export const CHANNEL_DATA_HEADER = 4;

/** Whether a datagram's first byte may begin ChannelData (channels 0x4000-0x4FFF). */
export const isChannelDataByte = (first: number): boolean => (first & 0xf0) === 0x40;

/** Writes the header for `length` bytes of data on `channel` at buf[at..at+4). */
export function writeChannelData(buf: Buffer, at: number, channel: number, length: number): void {
  buf.writeUInt16BE(channel, at);
  buf.writeUInt16BE(length, at + 2);
}

/** A ChannelData datagram's channel and data (a view of `datagram`), or null when it is not one. */
export function readChannelData(datagram: Buffer): { channel: number; data: Buffer } | null {
  if (datagram.length < CHANNEL_DATA_HEADER || !isChannelDataByte(datagram[0] as number)) return null;
  const length = datagram.readUInt16BE(2);
  // Over UDP the datagram may carry padding beyond the length, never less than it.
  if (CHANNEL_DATA_HEADER + length > datagram.length) return null;
  return {
    channel: datagram.readUInt16BE(0),
    data: datagram.subarray(CHANNEL_DATA_HEADER, CHANNEL_DATA_HEADER + length),
  };
}
