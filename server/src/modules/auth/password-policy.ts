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

let common: Set<string> | undefined;

/**
 * The list as a Set of lower-cased entries (96,518 once case is folded),
 * read once on first use: at start when ADMIN_PASSWORD is set, else at the
 * first password set. About 35 ms and 5 MB of heap (README, "Sign-in
 * throttling and password policy").
 */
export function commonPasswords(): ReadonlySet<string> {
  if (!common) {
    const text = fs.readFileSync(COMMON_PASSWORDS_FILE, 'utf8');
    const set = new Set<string>();
    for (const line of text.split('\n')) {
      if (line.length > 0) set.add(line.toLowerCase());
    }
    common = set;
  }
  return common;
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
  if (list.has(lower)) return true;
  const stripped = core(password);
  if (stripped.length > 0 && list.has(stripped)) return true;
  return list.has(unLeet(lower)) || (stripped.length > 0 && list.has(unLeet(stripped)));
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
