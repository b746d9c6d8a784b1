import fs from 'node:fs';
import type { Role } from '../../db/schema.js';
import { AppError } from '../../errors.js';

/** Shortest accepted password (characters) for users and for admins, and the longest for anyone. */
export const PASSWORD_MIN_LENGTH = 8;
export const ADMIN_PASSWORD_MIN_LENGTH = 12;
export const PASSWORD_MAX_LENGTH = 256;

/**
 * The 100,000 most common passwords, most common first (SecLists'
 * 10-million-password list, top 100k; server/data/COMMON-PASSWORDS.md says
 * where it comes from). Shipped in the repository: the check never calls out.
 */
export const COMMON_PASSWORDS_FILE = new URL('../../../data/common-passwords.txt', import.meta.url);

/** The list in one string, one entry a line, lower-cased, unique and sorted (by UTF-16 code units), with each line's start. */
export interface SortedList {
  text: string;
  /** Start of each line in `text`, and one past the end of the last line's terminator. */
  starts: Int32Array;
}

let common: SortedList | undefined;

/** Compares `a[aStart, aEnd)` with `b[bStart, bEnd)` by UTF-16 code units, as `<` on strings does. */
function compareRanges(a: string, aStart: number, aEnd: number, b: string, bStart: number, bEnd: number): number {
  const length = Math.min(aEnd - aStart, bEnd - bStart);
  for (let i = 0; i < length; i++) {
    const d = a.charCodeAt(aStart + i) - b.charCodeAt(bStart + i);
    if (d !== 0) return d;
  }
  return aEnd - aStart - (bEnd - bStart);
}

/**
 * The list as one sorted string. The shipped file already is one (lower
 * case, unique, sorted), so reading it makes two objects rather than a Set
 * of 96,518 strings (about 1.1 MB instead of 5 MB of heap, and no burst of
 * garbage at start); a list in any other order or case is sorted here.
 */
export function sortedList(raw: string): SortedList {
  let text = raw.endsWith('\n') ? raw : `${raw}\n`;
  let sorted = text === text.toLowerCase() && !text.includes('\r') && !text.startsWith('\n') && !text.includes('\n\n');
  for (let prev = 0, i = text.indexOf('\n'); sorted && i + 1 < text.length; ) {
    const next = text.indexOf('\n', i + 1);
    // Each line must sort strictly after the one before it (compared in place: no string per line).
    if (compareRanges(text, i + 1, next, text, prev, i) <= 0) sorted = false;
    prev = i + 1;
    i = next;
  }
  if (!sorted) {
    const entries = [...new Set(text.split(/\r?\n/).filter((l) => l.length > 0).map((l) => l.toLowerCase()))];
    entries.sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
    text = `${entries.join('\n')}\n`;
  }
  let count = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) count++;
  const starts = new Int32Array(count + 1);
  for (let n = 1, i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) starts[n++] = i + 1;
  return { text, starts };
}

/** Whether a lower-cased candidate is on the list: a binary search over its lines. */
export function onList(list: SortedList, candidate: string): boolean {
  let lo = 0;
  let hi = list.starts.length - 2;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const d = compareRanges(candidate, 0, candidate.length, list.text, list.starts[mid] as number, (list.starts[mid + 1] as number) - 1);
    if (d === 0) return true;
    if (d < 0) hi = mid - 1;
    else lo = mid + 1;
  }
  return false;
}

/**
 * The list, read once on first use: at start when ADMIN_PASSWORD is set,
 * else at the first password set.
 */
export function commonPasswords(): SortedList {
  common ??= sortedList(fs.readFileSync(COMMON_PASSWORDS_FILE, 'utf8'));
  return common;
}

/** How many entries the list has. */
export function commonPasswordCount(): number {
  return commonPasswords().starts.length - 1;
}

// Letters that people swap for look-alike digits and symbols ("p@ssw0rd").
const LOOK_ALIKES: Record<string, string> = { '0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '8': 'b', '@': 'a', '$': 's', '!': 'i' };

function unLeet(text: string): string {
  return [...text].map((c) => LOOK_ALIKES[c] ?? c).join('');
}

/** Lower case without the digits and symbols around it: "Password123!" -> "password". */
function core(text: string): string {
  return text.toLowerCase().replace(/^[^\p{L}]+|[^\p{L}]+$/gu, '');
}

function lettersOnly(text: string): string {
  return text.replace(/[^\p{L}]/gu, '');
}

/** The letters left once digits and symbols go, read with and without look-alikes: "@dm1n-2024" and "Admin2024!" both give "admin". */
function readings(text: string): Set<string> {
  const lower = text.trim().toLowerCase();
  const head = lower.replace(/[^\p{L}]+$/u, '');
  const tail = lower.replace(/^[^\p{L}]+/u, '');
  return new Set([lower, core(lower), head, tail].flatMap((r) => [lettersOnly(r), lettersOnly(unLeet(r))]).filter((r) => r.length > 0));
}

/** Is the password the username or a trivial variant of it (case, reversed, doubled, look-alikes, digits or symbols added)? */
export function isUsernameVariant(password: string, username: string): boolean {
  const name = username.trim().toLowerCase();
  if (name.length === 0) return false;
  if (password.trim().toLowerCase() === name) return true;
  const ofPassword = readings(password);
  for (const n of readings(name)) {
    for (const variant of [n, [...n].reverse().join(''), n + n]) if (ofPassword.has(variant)) return true;
  }
  return false;
}

/** Is the password, or its core without the digits and symbols around it, among the most common? */
export function isCommonPassword(password: string): boolean {
  const list = commonPasswords();
  const lower = password.toLowerCase();
  if (onList(list, lower)) return true;
  const stripped = core(password);
  if (stripped.length > 0 && onList(list, stripped)) return true;
  return onList(list, unLeet(lower)) || (stripped.length > 0 && onList(list, unLeet(stripped)));
}

export function minimumLengthFor(role: Role): number {
  return role === 'admin' ? ADMIN_PASSWORD_MIN_LENGTH : PASSWORD_MIN_LENGTH;
}

/** Why a password breaks the policy, or undefined when it is acceptable. */
export function passwordPolicyProblem(password: string, account: { username: string; role: Role }): string | undefined {
  const length = [...password].length;
  const min = minimumLengthFor(account.role);
  if (length < min) return `The password must be at least ${min} characters long${account.role === 'admin' ? ' for an admin' : ''}`;
  if (length > PASSWORD_MAX_LENGTH) return `The password must be at most ${PASSWORD_MAX_LENGTH} characters long`;
  if (isUsernameVariant(password, account.username)) return 'The password must not be the username or a variant of it';
  if (isCommonPassword(password)) return 'The password is one of the most commonly used passwords: choose another';
  return undefined;
}

/** Throws PASSWORD_TOO_WEAK (422) when the password breaks the policy for this account's role. */
export function assertPasswordPolicy(password: string, account: { username: string; role: Role }): void {
  const problem = passwordPolicyProblem(password, account);
  if (problem !== undefined) throw new AppError('PASSWORD_TOO_WEAK', problem);
}
