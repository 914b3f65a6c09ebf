import { toASCII, toUnicode } from 'tr46';
import { clip, normaliseAsciiEmail, type NormalisedEmail, type SuppressionPattern } from './prospect.js';

/**
 * Addresses as they arrive from people and systems: an internationalised
 * domain (zoe@müller.de) becomes its punycode form (zoe@xn--mller-kva.de)
 * before the address is normalised, so both spellings are one person. Every
 * edge (API, webhook, harvest, screening, CLI) normalises through here; only
 * workflow code, which cannot bundle the IDNA tables, uses the ASCII form
 * directly (lib/domain/prospect.ts).
 */

const IDNA = { checkBidi: true, checkJoiners: true, checkHyphens: true, useSTD3ASCIIRules: true, transitionalProcessing: false, verifyDNSLength: true } as const;

/**
 * A domain as DNS and mail servers know it: Unicode labels (müller.de) in
 * their punycode form (xn--mller-kva.de), by UTS #46 without transitional
 * mapping, as browsers do. Undefined when it is no valid IDN.
 */
export function asciiDomain(domain: string): string | undefined {
  if (/^[\x00-\x7f]*$/.test(domain)) return domain;
  return toASCII(domain, IDNA) ?? undefined;
}

/** The address as a person reads it: punycode labels shown in Unicode (zoe@xn--mller-kva.de → zoe@müller.de). */
export function unicodeEmail(email: string): string {
  const at = email.lastIndexOf('@');
  if (at < 0 || !email.includes('xn--')) return email;
  const { domain, error } = toUnicode(email.slice(at + 1), IDNA);
  return error ? email : `${email.slice(0, at)}@${domain}`;
}

/** An address normalised as one person (lib/domain/prospect.ts), its domain in ASCII first. */
export function normaliseEmail(raw: unknown): NormalisedEmail {
  if (typeof raw !== 'string') return normaliseAsciiEmail(raw);
  const at = raw.lastIndexOf('@');
  if (at < 0 || /^[\x00-\x7f]*$/.test(raw.slice(at + 1))) return normaliseAsciiEmail(raw);
  const domain = asciiDomain(raw.slice(at + 1).trim().toLowerCase().replace(/\.$/, ''));
  if (domain === undefined) return { ok: false, reason: `"${clip(raw)}" has an invalid internationalised domain` };
  return normaliseAsciiEmail(`${raw.slice(0, at)}@${domain}`);
}

/** `name@domain` (normalised like a lead) or `*@domain` (the domain and its subdomains). */
export function parseSuppressionPattern(raw: unknown): SuppressionPattern {
  if (typeof raw !== 'string' || !raw.trim()) return { ok: false, reason: 'pattern is required' };
  const text = raw.trim().toLowerCase();
  if (text.startsWith('*@')) {
    const probe = normaliseEmail(`x${text.slice(1)}`);
    return probe.ok ? { ok: true, pattern: `*@${probe.domain}`, kind: 'domain' } : { ok: false, reason: `"${clip(raw)}" is not a *@domain pattern` };
  }
  const email = normaliseEmail(text);
  return email.ok ? { ok: true, pattern: email.email, kind: 'address' } : { ok: false, reason: `"${clip(raw)}" is neither an address nor a *@domain pattern` };
}
