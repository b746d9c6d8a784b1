export interface SnippetPart {
  text: string;
  match: boolean;
}

const ENTITIES: Record<string, string> = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#39;': "'" };
const unescape = (s: string) => s.replace(/&(amp|lt|gt|quot|#39);/g, (e) => ENTITIES[e] ?? e);

/**
 * The server's search snippet is escaped text with matches in <mark>. It is
 * split into parts here and rendered as text nodes, so nothing in it can
 * ever become markup, whatever the server sent.
 */
export function parseSnippet(html: string): SnippetPart[] {
  const parts: SnippetPart[] = [];
  const re = /<mark>([\s\S]*?)<\/mark>/g;
  let at = 0;
  for (let m = re.exec(html); m; m = re.exec(html)) {
    if (m.index > at) parts.push({ text: unescape(html.slice(at, m.index)), match: false });
    parts.push({ text: unescape(m[1] ?? ''), match: true });
    at = m.index + m[0].length;
  }
  if (at < html.length) parts.push({ text: unescape(html.slice(at)), match: false });
  return parts;
}
