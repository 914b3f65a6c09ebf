/**
 * Length and format rules for any draft text, the model's or a person's edit,
 * and the opt-out line every email carries. Pure: the workflow, the API and
 * the activities all judge a draft with these.
 */

export const OPT_OUT_LINE = "If you'd rather not hear from me, just reply \"no thanks\" and I won't follow up.";
export const MAX_SUBJECT = 120;
export const MAX_BODY = 1600;

/** The body with our opt-out line at the end, once. */
export function withOptOut(body: string): string {
  const trimmed = body.replace(/\s+$/, '');
  return trimmed.includes(OPT_OUT_LINE) ? trimmed : `${trimmed}\n\n--\n${OPT_OUT_LINE}`;
}

const URL_PATTERN = /\bhttps?:\/\/|\bwww\.[a-z0-9-]+\.[a-z]/i;
const EMAIL_PATTERN = /[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}/i;
const PLACEHOLDER = /\{\{|\}\}|\[(first ?name|name|company|your name|date|time)\]|<(name|company)>/i;
const HTML_TAG = /<\/?[a-z][a-z0-9]*(\s[^>]*)?>/i;

/** What is wrong with a draft's subject and body; empty when it may go to a person for approval. */
export function checkGuards(d: { subject: string; body: string }): string[] {
  const problems: string[] = [];
  const subject = d.subject.trim();
  const body = d.body.replace(OPT_OUT_LINE, '').trim();
  if (!subject) problems.push('subject is empty');
  if (subject.length > MAX_SUBJECT) problems.push(`subject is longer than ${MAX_SUBJECT} characters`);
  if (/[\r\n]/.test(subject)) problems.push('subject spans several lines');
  if (body.length < 20) problems.push('body is too short');
  if (body.length > MAX_BODY) problems.push(`body is longer than ${MAX_BODY} characters`);
  for (const [what, text] of [['subject', subject], ['body', body]] as const) {
    if (URL_PATTERN.test(text)) problems.push(`${what} contains a link`);
    if (EMAIL_PATTERN.test(text)) problems.push(`${what} contains an email address`);
    if (PLACEHOLDER.test(text)) problems.push(`${what} contains a template placeholder`);
    if (HTML_TAG.test(text)) problems.push(`${what} contains HTML`);
  }
  return problems;
}
