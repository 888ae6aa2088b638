"""The words of the chat answer, in every supported LANGUAGE.

Each language has the same keys; a test checks that. The emoji and line order are those of
the original Worker, so clients and users who knew it see the same answer.
"""

from __future__ import annotations

PHRASES: dict[str, dict[str, str]] = {
    "en": {
        "original": "🎨 Original prompt: {}",
        "prompt_model": "💬 Prompt model: {}",
        "no_translation": "Original Prompt",
        "translated": "🌐 Translated prompt: {}",
        "size": "📐 Image size: {}",
        "seed": "🌱 Seed: {}",
        "ignored": "ℹ️ Ignored options (not supported by {model}): {options}",
        "skipped": "⚠️ Translation was skipped ({reason}); the original prompt was used.",
        "success": "🌟 Image generated successfully!",
        "result": "Here is the result:",
        "alt": "Generated image",
        "images": "🖼️ Images: {}",
        "failed": "❌ Image generation failed: {}",
        "housekeeping": "This is an image generation model: send a description of the picture you want, such as `a cute cat 16:9`.",
    },
    "de": {
        "original": "🎨 Ursprünglicher Prompt: {}",
        "prompt_model": "💬 Prompt-Modell: {}",
        "no_translation": "Ursprünglicher Prompt",
        "translated": "🌐 Übersetzter Prompt: {}",
        "size": "📐 Bildgröße: {}",
        "seed": "🌱 Seed: {}",
        "ignored": "ℹ️ Ignorierte Optionen (von {model} nicht unterstützt): {options}",
        "skipped": "⚠️ Die Übersetzung wurde übersprungen ({reason}); der ursprüngliche Prompt wurde verwendet.",
        "success": "🌟 Bild erfolgreich erstellt!",
        "result": "Hier ist das Ergebnis:",
        "alt": "Erstelltes Bild",
        "images": "🖼️ Bilder: {}",
        "failed": "❌ Bilderstellung fehlgeschlagen: {}",
        "housekeeping": "Dies ist ein Bildgenerierungsmodell: Beschreiben Sie das gewünschte Bild, zum Beispiel `a cute cat 16:9`.",
    },
    "zh-cn": {
        "original": "🎨 原始提示词：{}",
        "prompt_model": "💬 提示词模型：{}",
        "no_translation": "原始提示词",
        "translated": "🌐 翻译后的提示词：{}",
        "size": "📐 图像尺寸：{}",
        "seed": "🌱 种子：{}",
        "ignored": "ℹ️ 已忽略的选项（{model} 不支持）：{options}",
        "skipped": "⚠️ 已跳过翻译（{reason}），使用了原始提示词。",
        "success": "🌟 图像生成成功！",
        "result": "结果如下：",
        "alt": "生成的图像",
        "images": "🖼️ 图像：{}",
        "failed": "❌ 图像生成失败：{}",
        "housekeeping": "这是一个图像生成模型：请描述你想要的图片，例如 `一只可爱的猫 16:9`。",
    },
    "zh-hant": {
        "original": "🎨 原始提示詞：{}",
        "prompt_model": "💬 提示詞模型：{}",
        "no_translation": "原始提示詞",
        "translated": "🌐 翻譯後的提示詞：{}",
        "size": "📐 圖像尺寸：{}",
        "seed": "🌱 種子：{}",
        "ignored": "ℹ️ 已忽略的選項（{model} 不支援）：{options}",
        "skipped": "⚠️ 已略過翻譯（{reason}），使用了原始提示詞。",
        "success": "🌟 圖像生成成功！",
        "result": "結果如下：",
        "alt": "生成的圖像",
        "images": "🖼️ 圖像：{}",
        "failed": "❌ 圖像生成失敗：{}",
        "housekeeping": "這是一個圖像生成模型：請描述你想要的圖片，例如 `一隻可愛的貓 16:9`。",
    },
    "ja": {
        "original": "🎨 元のプロンプト：{}",
        "prompt_model": "💬 プロンプトモデル：{}",
        "no_translation": "元のプロンプト",
        "translated": "🌐 翻訳されたプロンプト：{}",
        "size": "📐 画像サイズ：{}",
        "seed": "🌱 シード：{}",
        "ignored": "ℹ️ 無視されたオプション（{model} は非対応）：{options}",
        "skipped": "⚠️ 翻訳はスキップされました（{reason}）。元のプロンプトを使用しました。",
        "success": "🌟 画像の生成に成功しました！",
        "result": "結果はこちらです：",
        "alt": "生成された画像",
        "images": "🖼️ 画像：{}",
        "failed": "❌ 画像の生成に失敗しました：{}",
        "housekeeping": "これは画像生成モデルです。欲しい画像を説明してください（例：`a cute cat 16:9`）。",
    },
    "es": {
        "original": "🎨 Prompt original: {}",
        "prompt_model": "💬 Modelo de prompt: {}",
        "no_translation": "Prompt original",
        "translated": "🌐 Prompt traducido: {}",
        "size": "📐 Tamaño de imagen: {}",
        "seed": "🌱 Semilla: {}",
        "ignored": "ℹ️ Opciones ignoradas ({model} no las admite): {options}",
        "skipped": "⚠️ Se omitió la traducción ({reason}); se usó el prompt original.",
        "success": "🌟 ¡Imagen generada con éxito!",
        "result": "Aquí está el resultado:",
        "alt": "Imagen generada",
        "images": "🖼️ Imágenes: {}",
        "failed": "❌ La generación de la imagen falló: {}",
        "housekeeping": "Este es un modelo de generación de imágenes: describe la imagen que quieres, por ejemplo `a cute cat 16:9`.",
    },
    "fr": {
        "original": "🎨 Prompt original : {}",
        "prompt_model": "💬 Modèle de prompt : {}",
        "no_translation": "Prompt original",
        "translated": "🌐 Prompt traduit : {}",
        "size": "📐 Taille de l'image : {}",
        "seed": "🌱 Graine : {}",
        "ignored": "ℹ️ Options ignorées (non prises en charge par {model}) : {options}",
        "skipped": "⚠️ La traduction a été ignorée ({reason}) ; le prompt original a été utilisé.",
        "success": "🌟 Image générée avec succès !",
        "result": "Voici le résultat :",
        "alt": "Image générée",
        "images": "🖼️ Images : {}",
        "failed": "❌ La génération de l'image a échoué : {}",
        "housekeeping": "Ceci est un modèle de génération d'images : décrivez l'image souhaitée, par exemple `a cute cat 16:9`.",
    },
    "ru": {
        "original": "🎨 Исходный запрос: {}",
        "prompt_model": "💬 Модель запроса: {}",
        "no_translation": "Исходный запрос",
        "translated": "🌐 Переведённый запрос: {}",
        "size": "📐 Размер изображения: {}",
        "seed": "🌱 Сид: {}",
        "ignored": "ℹ️ Пропущенные параметры ({model} их не поддерживает): {options}",
        "skipped": "⚠️ Перевод пропущен ({reason}); использован исходный запрос.",
        "success": "🌟 Изображение успешно создано!",
        "result": "Вот результат:",
        "alt": "Созданное изображение",
        "images": "🖼️ Изображения: {}",
        "failed": "❌ Не удалось создать изображение: {}",
        "housekeeping": "Это модель для создания изображений: опишите нужную картинку, например `a cute cat 16:9`.",
    },
}


class Phrasebook:
    """The answer's words in one language."""

    def __init__(self, language: str):
        self.language = language
        self._words = PHRASES.get(language, PHRASES["en"])

    def __call__(self, key: str, *args, **kwargs) -> str:
        return self._words[key].format(*args, **kwargs)
