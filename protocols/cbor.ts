/**
 * The one CBOR configuration both wire formats use, so payload and batch bytes follow the same rules.
 *
 * Encoding: plain maps (no cbor-x record extension, no tag 259), map headers of minimal size, and
 * integers as CBOR integers. cbor-x writes a JS number outside the 32-bit range (every epoch-ms
 * timestamp) as a float64; `cborInt` turns such integer fields into bigint so they go out as a
 * uint64/nint64 (major type 0/1) that strict decoders in other languages read as integers.
 *
 * Decoding: maps become plain objects (cbor-x renames a `__proto__` key, so no prototype pollution)
 * and 64-bit integers become numbers (cbor-x's default is bigint, which would make a timestamp sent
 * by any standard CBOR encoder fail validation). Integers above 2^53 lose precision and then fail
 * the safe-integer checks of the validators, as they should.
 *
 * Encoder and decoder are synchronous and not reentrant; one shared instance each is safe in Node.
 */
import { Decoder, Encoder } from 'cbor-x';

type EncoderOptions = ConstructorParameters<typeof Encoder>[0] & { variableMapSize?: boolean };
type DecoderOptions = ConstructorParameters<typeof Decoder>[0] & { int64AsNumber?: boolean };

export const cborEncoder = new Encoder({ useRecords: false, variableMapSize: true } as EncoderOptions);
export const cborDecoder = new Decoder({ useRecords: false, mapsAsObjects: true, int64AsNumber: true } as DecoderOptions);

/** An integer field as cbor-x should encode it: a bigint when it does not fit in 32 bits. */
export function cborInt<T>(n: T): T | bigint {
  if (typeof n === 'number' && Number.isSafeInteger(n) && (n > 0xffffffff || n < -0x100000000)) return BigInt(n);
  return n;
}
