/** Redis Cluster key slots, computed the way Redis does, so tests can check hash tags without a cluster. */

/** CRC16/XMODEM, the checksum that Redis Cluster uses for key slots. */
export function crc16(data: Buffer): number {
  let crc = 0;
  for (const byte of data) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
  }
  return crc;
}

/** Computes the Redis Cluster slot of a key: CRC16 of its hash tag (the first non-empty `{...}`), or of the whole key. */
export function keySlot(key: string): number {
  const open = key.indexOf("{");
  const close = open === -1 ? -1 : key.indexOf("}", open + 1);
  const hashed = close > open + 1 ? key.slice(open + 1, close) : key;
  return crc16(Buffer.from(hashed)) % 16384;
}
