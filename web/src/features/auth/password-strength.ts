/**
 * A hint while a password is typed, from the server's policy (modules/auth/password-policy.ts):
 * at least 12 characters for admins and 8 for users, not the username or a variant of it. The
 * server also refuses the 100,000 most common passwords; that list is not shipped to browsers,
 * so the hint can only say a password looks weak, never that the server will take it.
 */

export type Role = 'user' | 'admin';
export type StrengthLevel = 'weak' | 'fair' | 'good' | 'strong';

export interface PasswordStrength {
  level: StrengthLevel;
  /** 0-4, for the meter. */
  score: number;
  minLength: number;
  length: number;
  tooShort: boolean;
  likeUsername: boolean;
}

export function minimumPasswordLength(role: Role): number {
  return role === 'admin' ? 12 : 8;
}

const LOOK_ALIKES: Record<string, string> = { '0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '8': 'b', '@': 'a', $: 's', '!': 'i' };

function letters(text: string): string {
  return [...text.toLowerCase()].map((c) => LOOK_ALIKES[c] ?? c).join('').replace(/[^\p{L}]/gu, '');
}

export function passwordStrength(password: string, username: string, role: Role): PasswordStrength {
  const length = [...password].length;
  const minLength = minimumPasswordLength(role);
  const name = letters(username.trim());
  const stripped = letters(password.replace(/[^\p{L}]+$/u, ''));
  const likeUsername = name.length > 0 && (password.trim().toLowerCase() === username.trim().toLowerCase() || stripped === name || stripped === [...name].reverse().join(''));
  const tooShort = length < minLength;
  const classes = [/\p{Ll}/u, /\p{Lu}/u, /\p{N}/u, /[^\p{L}\p{N}]/u].filter((re) => re.test(password)).length;
  // Repeats ("aaaaaaaa", "abcabcabc") count as their distinct characters.
  const distinct = new Set(password).size;
  let score: number;
  if (tooShort || likeUsername || distinct <= 3) score = 0;
  else if (length >= 16 && distinct >= 8) score = 4;
  else if (length >= 12 && classes >= 3) score = 4;
  else if (length >= 12 || (classes >= 3 && distinct >= 6)) score = 3;
  else score = classes >= 2 ? 2 : 1;
  const level: StrengthLevel = score === 0 ? 'weak' : score === 1 || score === 2 ? 'fair' : score === 3 ? 'good' : 'strong';
  return { level, score, minLength, length, tooShort, likeUsername };
}
