import { useState, type FormEvent } from 'react';
import { useI18n } from '../../i18n/i18n';

interface SelectNode {
  type: 'userSelect';
  params: { description?: string; userSelectOptions: { key: string; value: string }[] };
}
interface FormNode {
  type: 'userInput';
  params: { description?: string; inputForm: { key: string; label?: string; type?: string; required?: boolean; description?: string }[] };
}

/** Recognises the two FastGPT interactive nodes the chat can answer; anything else is left alone. */
export function asInteractive(data: unknown): SelectNode | FormNode | undefined {
  if (!data || typeof data !== 'object') return undefined;
  const d = data as { type?: unknown; params?: { userSelectOptions?: unknown; inputForm?: unknown } };
  if (d.type === 'userSelect' && Array.isArray(d.params?.userSelectOptions)) return d as SelectNode;
  if (d.type === 'userInput' && Array.isArray(d.params?.inputForm)) return d as FormNode;
  return undefined;
}

/** A FastGPT interactive node (select or form). The reply goes back as the next question, as FastGPT expects. */
export function InteractiveNode({ data, disabled, onReply }: { data: unknown; disabled: boolean; onReply: (text: string) => void }) {
  const { t } = useI18n();
  const node = asInteractive(data);
  const [values, setValues] = useState<Record<string, string>>({});
  if (!node) return null;
  if (node.type === 'userSelect') {
    return (
      <fieldset className="interactive" data-testid="interactive-select">
        <legend>{node.params.description || t('chat.interactiveSelect')}</legend>
        <div className="option-row">
          {node.params.userSelectOptions.map((o) => (
            <button key={o.key} type="button" disabled={disabled} onClick={() => onReply(o.value)}>
              {o.value}
            </button>
          ))}
        </div>
      </fieldset>
    );
  }
  const submit = (e: FormEvent) => {
    e.preventDefault();
    onReply(JSON.stringify(values));
  };
  return (
    <form className="interactive" onSubmit={submit} data-testid="interactive-form">
      <fieldset>
        <legend>{node.params.description || t('chat.interactiveForm')}</legend>
        {node.params.inputForm.map((field) => (
          <label key={field.key} className="field">
            <span>
              {field.label ?? field.key}
              {field.required ? ' *' : ''}
            </span>
            <input value={values[field.key] ?? ''} required={field.required === true} disabled={disabled} onChange={(e) => setValues((v) => ({ ...v, [field.key]: e.target.value }))} />
          </label>
        ))}
        <button type="submit" className="primary" disabled={disabled}>
          {t('common.submit')}
        </button>
      </fieldset>
    </form>
  );
}
