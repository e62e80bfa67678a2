/**
 * Whole-package encryption in the age format (age-encryption, which interoperates with the
 * reference `age` both ways): a passphrase (scrypt) or X25519 recipients (`age1…`), read with
 * the passphrase or identity files (`AGE-SECRET-KEY-1…`).
 */
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { FerryError, isFerryError } from "../core/errors.js";

/** How a package is encrypted. */
export type EncryptTo = { passphrase: string } | { recipients: string[] };

/** What may open an encrypted package. */
export interface DecryptWith {
  passphrase?: string;
  /** Identity files' paths (`age-keygen` output: `AGE-SECRET-KEY-1…` lines, `#` comments). */
  identityFiles?: string[];
}

/** Keys with, once {@link unlock} found it, the file key itself (kept inside the reader, never exported). */
export interface UnlockedKeys extends DecryptWith {
  /**
   * The file key a passphrase or identity unwrapped from this file's header: later passes
   * over the file use it, without deriving it again (scrypt takes about a second).
   */
  fileKey?: Uint8Array;
}

/** The binary age header's first line; armored files start with a PEM line. */
const AGE_MAGIC = "age-encryption.org/v1\n";
const AGE_ARMOR = "-----BEGIN AGE ENCRYPTED FILE-----";

/** True when a file starting with `head` is age-encrypted. */
export function isAgeEncrypted(head: Uint8Array): boolean {
  const text = Buffer.from(head).toString("latin1");
  return text.startsWith(AGE_MAGIC) || text.startsWith(AGE_ARMOR);
}

/** `plain` encrypted as it streams (bounded memory). */
export async function encryptStream(plain: AsyncIterable<Uint8Array>, to: EncryptTo): Promise<Readable> {
  // Loaded with the first encrypted package, not on every command.
  const { Encrypter } = await import("age-encryption");
  const e = new Encrypter();
  if ("passphrase" in to) e.setPassphrase(to.passphrase);
  else {
    if (to.recipients.length === 0)
      throw new FerryError("E_USAGE", "no recipient to encrypt for: give --recipient age1…");
    for (const r of to.recipients) {
      try {
        e.addRecipient(r);
      } catch (err) {
        throw new FerryError(
          "E_USAGE",
          `recipient ${r}: not an age recipient (${(err as Error).message}): it starts with age1`,
          {
            cause: err,
          },
        );
      }
    }
  }
  const web = ReadableStream.from(plain) as unknown as globalThis.ReadableStream<Uint8Array>;
  const out = await e.encrypt(web);
  return Readable.fromWeb(out as unknown as WebReadableStream<Uint8Array>);
}

/**
 * `cipher` decrypted as it streams. The header is checked before this resolves, so a wrong
 * passphrase or key is refused before any data is read.
 *
 * @throws FerryError `E_DECRYPT` when neither the passphrase nor an identity opens it.
 */
export async function decryptStream(
  cipher: AsyncIterable<Uint8Array>,
  keys: UnlockedKeys,
  file: string,
): Promise<Readable> {
  const d = await decrypterFor(keys, file);
  const web = ReadableStream.from(cipher) as unknown as globalThis.ReadableStream<Uint8Array>;
  try {
    const out = await d.decrypt(web);
    return Readable.fromWeb(out as unknown as WebReadableStream<Uint8Array>);
  } catch (err) {
    throw decryptError(err, keys, file);
  }
}

/**
 * `keys` with the file key of the encrypted file at `path` (read from its header once), so
 * each later pass over it skips the passphrase's key derivation.
 *
 * @throws FerryError as {@link decryptStream} does.
 */
export async function unlock(path: string, keys: UnlockedKeys): Promise<UnlockedKeys> {
  if (keys.fileKey) return keys;
  const d = await decrypterFor(keys, path);
  // The header is text lines up to its MAC line; what follows it is ignored.
  const head = Buffer.alloc(MAX_HEADER_BYTES);
  let n = 0;
  try {
    const fd = openSync(path, "r");
    try {
      for (let got = -1; got !== 0 && n < head.length; n += got) got = readSync(fd, head, n, head.length - n, n);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw new FerryError("E_NOT_FOUND", `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return { ...keys, fileKey: await d.decryptHeader(head.subarray(0, n)) };
  } catch (err) {
    // A header longer than what was read (thousands of recipients): each pass derives the key.
    if (n === head.length && !/no identity matched|HMAC/i.test((err as Error).message)) return keys;
    throw decryptError(err, keys, path);
  }
}

/** Bytes read for an age header (a few hundred per recipient). */
const MAX_HEADER_BYTES = 1 << 20;

/** A decrypter holding the file key when it is known, else the passphrase and identities. */
async function decrypterFor(keys: UnlockedKeys, file: string) {
  const { Decrypter } = await import("age-encryption");
  const d = new Decrypter();
  const fileKey = keys.fileKey;
  if (fileKey) {
    // The header's MAC is still checked with it: another file's header is refused.
    d.addIdentity({ unwrapFileKey: () => fileKey });
    return d;
  }
  if (keys.passphrase === undefined && (keys.identityFiles ?? []).length === 0) {
    throw new FerryError(
      "E_DECRYPT",
      `${file} is encrypted: set FERRY_PASSPHRASE (or answer the prompt), or give --identity FILE (FERRY_IDENTITY) with its age key`,
    );
  }
  if (keys.passphrase !== undefined) d.addPassphrase(keys.passphrase);
  for (const f of keys.identityFiles ?? []) for (const id of identitiesIn(f)) d.addIdentity(id);
  return d;
}

/** Why a decryption failed: a key that does not open it (`E_DECRYPT`), or a damaged header (`E_CHECKSUM`). */
function decryptError(err: unknown, keys: UnlockedKeys, file: string): FerryError {
  if (isFerryError(err)) return err;
  const why = (err as Error).message;
  if (keys.fileKey) {
    return new FerryError(
      "E_CHECKSUM",
      `${file}: its age header no longer verifies (${why}): the file was damaged or replaced since it was opened`,
      { cause: err, details: { file } },
    );
  }
  if (!/no identity matched|passphrase|recipient|scrypt/i.test(why)) {
    // Not a key that failed: the header itself is damaged.
    return new FerryError("E_CHECKSUM", `${file}: its age header is damaged (${why}): not a whole encrypted package`, {
      cause: err,
      details: { file },
    });
  }
  const what = keys.passphrase !== undefined ? "the passphrase" : "the identity";
  return new FerryError(
    "E_DECRYPT",
    `${file}: ${what} does not open it (${why}); nothing was read or written: check FERRY_PASSPHRASE or --identity`,
    { cause: err, details: { file } },
  );
}

/** The `AGE-SECRET-KEY-…` lines of an identity file. */
function identitiesIn(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new FerryError("E_CONFIG", `identity file ${path}: ${(err as Error).message}`, { cause: err });
  }
  const ids = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.startsWith("AGE-SECRET-KEY-"));
  if (ids.length === 0) {
    throw new FerryError(
      "E_CONFIG",
      `identity file ${path} holds no age identity (a line AGE-SECRET-KEY-1…, from age-keygen)`,
    );
  }
  return ids;
}

/** True when the file at `path` is age-encrypted (false when it cannot be read: the caller reports that). */
export function isEncryptedFile(path: string): boolean {
  try {
    const fd = openSync(path, "r");
    try {
      const head = Buffer.alloc(64);
      return isAgeEncrypted(head.subarray(0, readSync(fd, head, 0, 64, 0)));
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}
