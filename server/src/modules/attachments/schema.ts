import { Type } from '@sinclair/typebox';
import { Envelope, ErrorResponses } from '../../http/response.js';
import { binaryBody } from '../../plugins/validation.js';

export const AttachmentParams = Type.Object({ id: Type.String({ format: 'uuid', description: 'An attachment id' }) }, { additionalProperties: false });

export const LinkQuery = Type.Object(
  {
    expires: Type.Integer({ minimum: 0, maximum: 100_000_000_000, description: 'When the link stops working (seconds since the epoch)' }),
    signature: Type.String({ minLength: 1, maxLength: 100 }),
  },
  { additionalProperties: false },
);

export const UploadQuery = Type.Object(
  { name: Type.Optional(Type.String({ maxLength: 255, description: 'The file name to show (no path); the type is decided from the bytes, never from the name' })) },
  { additionalProperties: false },
);

/** The bytes of the file; Content-Type is the client's claim, checked against the bytes (application/octet-stream claims nothing). */
export const UploadBody = binaryBody('The file itself (not multipart). Content-Type: what the client believes it is; a claim the bytes contradict is refused (415 ATTACHMENT_TYPE_MISMATCH).');
export const ThumbnailBody = binaryBody('A small PNG, JPEG or WebP image of the attachment (at most 64 KiB), made by the client.');

const Attachment = Type.Object({
  id: Type.String(),
  name: Type.String(),
  contentType: Type.String({ description: 'Decided from the bytes' }),
  kind: Type.Union([Type.Literal('image'), Type.Literal('file')]),
  size: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
  sha256: Type.String(),
  url: Type.String({ description: 'Where it is served; a question names it by this URL in an image_url or file_url part' }),
  createdAt: Type.String(),
});

export const UploadResponses = { 201: Envelope(Attachment), ...ErrorResponses };
const Bytes = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
export const ListQuery = Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 200 })) }, { additionalProperties: false });
export const ListResponses = {
  200: Envelope(Type.Object({ usedBytes: Bytes, quotaBytes: Bytes, maxBytes: Bytes, items: Type.Array(Attachment, { description: 'Newest first' }) })),
  ...ErrorResponses,
};
export const FileResponses = {
  200: { description: 'The bytes, as the type decided at upload; non-images as a download', content: { 'application/octet-stream': { schema: Type.String({ format: 'binary' }) } } },
  ...ErrorResponses,
};
export const DoneResponses = { 200: Envelope(Type.Object({ id: Type.String() })), ...ErrorResponses };
